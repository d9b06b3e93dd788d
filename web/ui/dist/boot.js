(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-D73lP3F3.js","/assets/LiveWatchView-Cy4qtldw.css","/assets/app-BJpUA7Pa.js","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/HlsPlayer-qf02yqw-.js","/assets/HlsPlayer-CLZ49pZF.css","/assets/hls-22D11oyj.js","/assets/index-BpuXzLXN.js","/assets/index-Dn0_iCjr.css","/assets/vue-DLbTlhsp.js","/assets/LoadState-D9yGiuZa.js","/assets/LoadState-Rbd9Sssd.css","/assets/StatusTag-Dz8luyPO.js","/assets/NotFoundView-CvBxekHg.js","/assets/NotFoundView-DAwMrgAp.css"].forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
