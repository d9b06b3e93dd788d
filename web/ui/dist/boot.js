(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-B2UveI3R.js","/assets/LiveWatchView-DEpDYq8c.css","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/app-CtLLG2vB.js","/assets/HlsPlayer-CmyhrXXD.js","/assets/HlsPlayer-BU9nlwBN.css","/assets/hls-22D11oyj.js","/assets/index-B7gU4hEt.js","/assets/index-Bvmf7ne9.css","/assets/vue-zfwpsBjC.js","/assets/LoadState-B5Bsf4QE.js","/assets/LoadState-Rbd9Sssd.css","/assets/PaywallPanel-D3vCFjGR.js","/assets/PaywallPanel-CFUHPIiZ.css","/assets/StatusTag-HrkrZQ2H.js","/assets/NotFoundView-BILMXt9y.js","/assets/NotFoundView-DAwMrgAp.css"].forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
