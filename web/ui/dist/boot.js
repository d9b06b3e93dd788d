(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-quDe1wuY.js","/assets/LiveWatchView-FRcFw4kU.css","/assets/app-DbAD3U6a.js","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/HlsPlayer-DhWbHf2u.js","/assets/HlsPlayer-BU9nlwBN.css","/assets/hls-22D11oyj.js","/assets/index-CHLAwqMs.js","/assets/index-Bvmf7ne9.css","/assets/vue-D37tWHdj.js","/assets/LoadState-BIy4fYDe.js","/assets/LoadState-Rbd9Sssd.css","/assets/PaywallPanel-D5wZk4iw.js","/assets/PaywallPanel-D1FRYg58.css","/assets/StatusTag-V5T5SoH8.js","/assets/NotFoundView-BkDwB0jz.js","/assets/NotFoundView-DAwMrgAp.css"].forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
