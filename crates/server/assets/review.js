// The note review page: a click (or Enter) on a drafted sentence highlights the transcript
// turns and visit inputs it cites, and scrolls the first into view. No framework, no build.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  function show(sentence) {
    document.querySelectorAll(".highlighted").forEach(function (e) { e.classList.remove("highlighted"); });
    document.querySelectorAll(".sentence.selected").forEach(function (e) { e.classList.remove("selected"); });
    sentence.classList.add("selected");
    var first = null;
    (sentence.dataset.evidence || "").split(" ").forEach(function (id) {
      var cited = id && document.getElementById(id);
      if (cited) {
        cited.classList.add("highlighted");
        first = first || cited;
      }
    });
    if (first) { first.scrollIntoView({ block: "nearest" }); }
  }
  document.querySelectorAll(".sentence").forEach(function (sentence) {
    sentence.addEventListener("click", function () { show(sentence); });
    sentence.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); show(sentence); }
    });
  });
});
