// MathJax 3 for pymdownx.arithmatex (generic mode): typeset only what arithmatex marked, and
// the notebooks' markdown cells. tex-chtml.js is served from the site itself (docs/hooks.py
// copies it from the django-static-mathjax package), so no page needs a CDN.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    tags: "none",
  },
  options: {
    ignoreHtmlClass: ".*",
    processHtmlClass: "arithmatex|jp-MarkdownCell|jp-RenderedMarkdown|text_cell_render",
  },
};
