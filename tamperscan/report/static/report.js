/* tamperscan report: filters and paging over a pre-built index; row details are loaded
 * page file by page file with <script> tags (fetch() of file:// is blocked in Chromium).
 * Data are only ever inserted with textContent / attributes, never as HTML. */
(function () {
  "use strict";

  const ERROR = 1, FLAGGED = 2;
  const AGREE = { both: 1, disagree: 2, neither: 3 };
  const state = {
    index: null, flags: null, pages: new Map(), waiting: new Map(),
    matches: new Int32Array(0), page: 0, size: 50, token: 0,
  };
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pageFile(n) {
    return "data/page-" + String(n).padStart(4, "0") + ".js";
  }

  function loadPage(n) {
    if (state.pages.has(n)) return Promise.resolve();
    if (state.waiting.has(n)) return state.waiting.get(n);
    const promise = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = pageFile(n);
      script.onload = () => (state.pages.has(n) ? resolve() : reject(new Error(pageFile(n))));
      script.onerror = () => reject(new Error("cannot load " + pageFile(n)));
      document.head.appendChild(script);
    });
    state.waiting.set(n, promise);
    promise.catch(() => state.waiting.delete(n));
    return promise;
  }

  function number(id) {
    const value = $(id).value.trim();
    if (value === "") return null;
    const parsed = Number(value);
    return Number.isFinite(parsed) ? parsed : null;
  }

  function filters() {
    return {
      min: number("f-min"), max: number("f-max"), status: $("f-status").value,
      flagged: $("f-flagged").value, agree: $("f-agree").value,
    };
  }

  function applyFilters() {
    const f = filters();
    const idx = state.index, scale = idx.scoreScale, scores = idx.score, flags = state.flags;
    const lo = f.min === null ? null : Math.round(f.min * scale);
    const hi = f.max === null ? null : Math.round(f.max * scale);
    const agree = AGREE[f.agree] || 0;
    const out = new Int32Array(idx.total);
    let count = 0;
    for (let i = 0; i < idx.total; i++) {
      const code = flags[i], s = scores[i];
      if (f.status === "ok" && (code & ERROR)) continue;
      if (f.status === "error" && !(code & ERROR)) continue;
      if (f.flagged === "yes" && !(code & FLAGGED)) continue;
      if (f.flagged === "no" && (code & FLAGGED)) continue;
      if (agree && (code >> 2) !== agree) continue;
      if (lo !== null && (s < 0 || s < lo)) continue;
      if (hi !== null && (s < 0 || s > hi)) continue;
      out[count++] = i;
    }
    state.matches = out.subarray(0, count);
    state.page = 0;
    saveHash(f);
    render();
  }

  function saveHash(f) {
    const params = new URLSearchParams();
    if (f.min !== null) params.set("min", f.min);
    if (f.max !== null) params.set("max", f.max);
    for (const key of ["status", "flagged", "agree"]) if (f[key] !== "any") params.set(key, f[key]);
    if (state.page) params.set("page", state.page + 1);
    if (state.size !== state.index.rowsPerPage) params.set("size", state.size);
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function loadHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.has("min")) $("f-min").value = params.get("min");
    if (params.has("max")) $("f-max").value = params.get("max");
    for (const key of ["status", "flagged", "agree"]) {
      if (params.has(key)) $("f-" + key).value = params.get(key);
    }
    const size = Number(params.get("size"));
    if (size > 0) state.size = size;
    return Math.max(0, (Number(params.get("page")) || 1) - 1);
  }

  function pageCount() {
    return Math.max(1, Math.ceil(state.matches.length / state.size));
  }

  function fmt(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
  }

  function bar(label, value, threshold) {
    const wrap = el("div", "model");
    wrap.appendChild(el("span", "name", label));
    const track = el("span", "track");
    const fill = el("span", "fill" + (value !== null && value >= threshold ? " hot" : ""));
    fill.style.width = value === null ? "0%" : Math.round(Math.min(1, Math.max(0, value)) * 100) + "%";
    track.appendChild(fill);
    wrap.appendChild(track);
    wrap.appendChild(el("span", "num", fmt(value, 3)));
    return wrap;
  }

  function figure(src, caption, kind, missing) {
    const fig = el("figure", "fig " + kind);
    if (src) {
      const img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = caption;
      img.src = src;
      fig.appendChild(img);
    } else if (kind === "thumb") {
      const img = el("img", "placeholder");
      img.alt = "source unavailable";
      img.src = "assets/placeholder.svg";
      fig.appendChild(img);
    } else {
      fig.appendChild(el("div", "missing", missing));
    }
    fig.appendChild(el("figcaption", null, caption));
    return fig;
  }

  function rowNode(position, row) {
    const F = state.fieldIndex, threshold = state.index.threshold;
    const status = row[F.status], score = row[F.score], img = row[F.img];
    const flagged = (state.flags[position] & FLAGGED) !== 0;
    const node = el("article", "row" + (img ? " with-images" : " compact") +
      (status !== "ok" ? " error" : "") + (flagged ? " flagged" : ""));
    node.dataset.rank = String(position + 1);
    node.dataset.status = status;
    node.dataset.score = score === null ? "" : String(score);

    node.appendChild(el("div", "rank", "#" + (position + 1)));
    if (img) {
      const figs = el("div", "figs");
      figs.appendChild(figure(img.t, "image", "thumb"));
      figs.appendChild(figure(img.h, "heatmap", "heat", "no heatmap"));
      figs.appendChild(figure(img.m, "mask outline", "mask", "no mask"));
      node.appendChild(figs);
    }
    const meta = el("div", "meta");
    const head = el("div", "headline");
    head.appendChild(el("span", "score" + (flagged ? " hot" : ""), status === "ok" ? fmt(score, 3) : "—"));
    head.appendChild(el("span", "tag " + (status === "ok" ? "ok" : "err"), status));
    if (flagged) head.appendChild(el("span", "tag flag", "flagged"));
    if (row[F.refined]) head.appendChild(el("span", "tag", "refined"));
    if (!img && flagged) {
      const tag = el("span", "tag", "no preview");
      tag.title = "previews are made for the top " + state.index.topK + " flagged rows only";
      head.appendChild(tag);
    }
    const uri = el("span", "uri", row[F.uri]);
    uri.title = row[F.uri];
    head.appendChild(uri);
    meta.appendChild(head);
    if (status === "ok") {
      const models = el("div", "models");
      models.appendChild(bar("two-stream", row[F.ts], threshold));
      models.appendChild(bar("WCBnet", row[F.wc], threshold));
      if (F.cm !== undefined && row[F.cm]) models.appendChild(bar("copy-move", row[F.cm], threshold));
      if (F.jp !== undefined && row[F.jp]) models.appendChild(bar("JPEG", row[F.jp], threshold));
      const heads = row[F.heads];
      const extra = el("div", "extra");
      extra.appendChild(el("span", null, "heads b2/b3/b4 " +
        (heads ? heads.map((h) => fmt(h, 2)).join(" / ") : "–")));
      extra.appendChild(el("span", null, "mask " + (row[F.mask] === null ? "–" : fmt(row[F.mask] * 100, 1) + " %")));
      if (row[F.w]) extra.appendChild(el("span", null, row[F.w] + "×" + row[F.h]));
      if (F.jf !== undefined && row[F.jf]) extra.appendChild(el("span", null, row[F.jf]));
      models.appendChild(extra);
      meta.appendChild(models);
    }
    if (row[F.error]) meta.appendChild(el("div", "errtext", row[F.error]));
    if (img && img.n) meta.appendChild(el("div", "note", img.n));
    node.appendChild(meta);
    return node;
  }

  function render() {
    const token = ++state.token;
    const total = state.matches.length, pages = pageCount();
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * state.size, rows = state.matches.subarray(start, start + state.size);
    $("count").textContent = total.toLocaleString("en") + " of " +
      state.index.total.toLocaleString("en") + " rows match";
    $("page-info").textContent = "Page " + (state.page + 1) + " / " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    const needed = new Set();
    for (const i of rows) needed.add(Math.floor(i / state.index.chunkRows) + 1);
    Promise.all([...needed].map(loadPage)).then(() => {
      if (token !== state.token) return;
      const list = $("rows");
      list.replaceChildren();
      if (!rows.length) list.appendChild(el("p", "muted", "No rows match these filters."));
      for (const i of rows) {
        const chunk = state.pages.get(Math.floor(i / state.index.chunkRows) + 1);
        list.appendChild(rowNode(i, chunk[i % state.index.chunkRows]));
      }
      list.dataset.ready = String(token);
    }).catch((err) => {
      if (token !== state.token) return;
      $("rows").replaceChildren(el("p", "errtext", "Could not load report data: " + err.message));
    });
  }

  function go(delta) {
    const next = Math.min(pageCount() - 1, Math.max(0, state.page + delta));
    if (next !== state.page) {
      state.page = next;
      saveHash(filters());
      render();
      window.scrollTo({ top: $("filters").offsetTop - 8 });
    }
  }

  function start() {
    const idx = state.index;
    state.fieldIndex = Object.fromEntries(idx.fields.map((name, i) => [name, i]));
    state.flags = new Uint8Array(idx.total);
    for (let i = 0; i < idx.total; i++) state.flags[i] = parseInt(idx.flags[i], 16);
    state.size = idx.rowsPerPage;
    const page = loadHash();
    const sizes = [...new Set([idx.rowsPerPage, 25, 50, 100, 250])].sort((a, b) => a - b);
    for (const n of sizes) {
      const option = el("option", null, n);
      option.value = String(n);
      $("page-size").appendChild(option);
    }
    $("page-size").value = String(state.size);

    let timer = 0;
    for (const id of ["f-min", "f-max"]) {
      $(id).addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(applyFilters, 150); });
    }
    for (const id of ["f-status", "f-flagged", "f-agree"]) $(id).addEventListener("change", applyFilters);
    $("f-reset").addEventListener("click", () => {
      for (const id of ["f-min", "f-max"]) $(id).value = "";
      for (const id of ["f-status", "f-flagged", "f-agree"]) $(id).value = "any";
      applyFilters();
    });
    $("page-size").addEventListener("change", () => {
      state.size = Number($("page-size").value);
      state.page = 0;
      saveHash(filters());
      render();
    });
    $("prev").addEventListener("click", () => go(-1));
    $("next").addEventListener("click", () => go(1));
    document.addEventListener("keydown", (e) => {
      if (e.target.closest && e.target.closest("input, select")) return;
      if (e.key === "ArrowRight") go(1);
      if (e.key === "ArrowLeft") go(-1);
    });
    for (const bin of document.querySelectorAll("#histogram .bin")) {
      bin.addEventListener("click", () => {
        $("f-min").value = bin.dataset.lo;
        $("f-max").value = bin.dataset.hi;
        $("f-status").value = "ok";
        applyFilters();
      });
    }
    applyFilters();
    if (page) {
      state.page = Math.min(page, pageCount() - 1);
      saveHash(filters());
      render();
    }
  }

  window.TamperReport = {
    index(data) {
      state.index = data;
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
      else start();
    },
    addPage(n, rows) {
      state.pages.set(n, rows);
    },
  };
})();
