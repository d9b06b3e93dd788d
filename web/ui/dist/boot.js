(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-N2dhZO-h.js","/assets/LiveWatchView-7xp4pPwq.css","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/app-w7NFHAwf.js","/assets/app-DW8pby3q.css","/assets/HlsPlayer-CSJ52pkv.js","/assets/HlsPlayer-BacUPws8.css","/assets/hls-22D11oyj.js","/assets/NotFoundView-CiJkZLcp.js","/assets/element-B6n42C0s.js","/assets/element-BaIgQE0G.css"].forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
