(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  var request = fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-B6BWjjux.js","/assets/LiveWatchView-7xp4pPwq.css","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/app-CPWiYLrK.js","/assets/app-DW8pby3q.css","/assets/HlsPlayer-DMYIZMJN.js","/assets/HlsPlayer-BacUPws8.css","/assets/hls-22D11oyj.js","/assets/NotFoundView-BiFldVhy.js","/assets/element-DnWfabhT.js","/assets/element-BaIgQE0G.css"].forEach(function (href) {
    var link = document.createElement('link');
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; link.crossOrigin = ''; }
    link.href = href;
    document.head.appendChild(link);
  });
})();
