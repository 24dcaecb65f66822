// MathJax 3 configuration. It typesets what pymdownx.arithmatex wrapped (\( \), \[ \]) and
// the notebooks' markdown cells ($ $, $$ $$); code blocks are skipped (MathJax's default
// skipHtmlTags). tex-chtml.js is served from the site itself: docs/hooks.py copies it from
// the django-static-mathjax package, so no page needs a CDN.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    tags: "ams",
  },
};
