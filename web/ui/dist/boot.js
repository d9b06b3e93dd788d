(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-D1MHa4tu.js","/assets/LiveWatchView-C26B5ljD.css","/assets/app-CdTqvSV4.js","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/HlsPlayer-BqRpsRYT.js","/assets/HlsPlayer-BU9nlwBN.css","/assets/hls-22D11oyj.js","/assets/index-C8LHlFuD.js","/assets/index-AbM4Ba07.css","/assets/vue-DrTGK-Fs.js","/assets/LoadState-CrU3_UV8.js","/assets/LoadState-Rbd9Sssd.css","/assets/StatusTag-6K1d8c-s.js","/assets/NotFoundView-YpFbGVPi.js","/assets/NotFoundView-DAwMrgAp.css"].forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
