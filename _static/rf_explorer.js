/* The receptive-field explorer of the chapter "Receptive fields"
   (book/receptive_fields.md). No server, no network: everything runs here.

   Its arithmetic is rf_arithmetic.js (window.rfArithmetic), which the digit
   pad shares; window.rfExplorer.compute and .describe are that script's.

   The widget fills the element with id "rf-explorer". Its presets and the
   digit come from <script type="application/json" id="rf-presets">, which
   the chapter writes at build time with mnist_lib.explorer from the
   calculator: no number of a preset is typed here. */
(function () {
  "use strict";

  /* ------------------------------------------------------------ the widget */

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key.startsWith("on")) {
        if (value) node.addEventListener(key.slice(2), value);
      } else if (value !== false && value !== undefined) node.setAttribute(key, value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const num = (v) => (Number.isInteger(v) ? `${v}` : `${Math.round(v * 100) / 100}`);

  const BLUE = "#1f77b4", RED = "#d62728", ORANGE = "#ff7f0e";

  function explorer(root, data, rf) {
    const {compute, describe, trunk, unitBox, SETTINGS} = rf;
    const size = data.size;
    const presets = data.presets;
    const state = {preset: data.selected, layers: [], rows: [], layer: 0,
                   unit: [0, 0]};

    const presetSelect = el("select", {id: "rf-preset",
                                       onchange: () => choose(presetSelect.value)},
      ...presets.map((p) => el("option", {value: p.name}, p.name)),
      el("option", {value: "", disabled: "disabled"}, "your own layers"));
    const list = el("ol", {class: "rf-layers"});
    const add = el("button", {type: "button", onclick: () => {
      state.layers.push({kind: "conv", k: 3, s: 1, p: 0, d: 1});
      edited(true);
    }}, "Add a layer");
    const error = el("p", {class: "rf-error", role: "alert", hidden: "hidden"});
    const layerSelect = el("select", {id: "rf-layer",
                                      onchange: () => pick(+layerSelect.value)});
    const number = (id) => el("input", {id, type: "number", min: 0, step: 1,
                                        inputmode: "numeric", onchange: unit});
    const rowInput = number("rf-row"), colInput = number("rf-col");
    const canvas = el("canvas", {class: "rf-digit", role: "img", width: 300,
                                 height: 300, onclick: clicked});
    const caption = el("figcaption", {id: "rf-caption", "aria-live": "polite"});
    const table = el("table", {class: "rf-table"});
    const quote = el("p", {class: "rf-quote"});
    const plot = svg("svg", {class: "rf-plot", viewBox: "0 0 480 210", role: "img"});

    root.replaceChildren(
      el("div", {class: "rf-controls"},
         el("label", {for: "rf-preset"}, "Network "), presetSelect),
      el("details", {class: "rf-editor"},
         el("summary", {}, "Edit the layers"),
         el("p", {class: "rf-hint"}, "k: kernel, s: stride, p: padding, d: ",
            "dilation (convolutions only). A global average pooling takes the ",
            "whole map."),
         list, add),
      error,
      el("div", {class: "rf-panels"},
         el("figure", {class: "rf-figure"}, canvas, caption,
            el("div", {class: "rf-unit"},
               el("label", {}, "Layer ", layerSelect),
               el("label", {}, "Row ", rowInput),
               el("label", {}, "Column ", colInput)),
            el("p", {class: "rf-hint"}, "Or click the digit to pick the unit there.")),
         el("div", {class: "rf-results"},
            el("div", {class: "rf-table-wrap"}, table), quote)),
      el("figure", {class: "rf-growth"}, plot,
         el("figcaption", {}, "The RF after each layer (hollow: global)")));

    function choose(name) {
      const preset = presets.find((p) => p.name === name);
      state.preset = name;
      state.layers = preset.layers.map((layer) => Object.assign({}, layer));
      edited(true, true);
    }

    // Recompute after any change. `relist`: the list of layers changed shape;
    // `fresh`: a new network, shown first at the centre unit of its trunk.
    function edited(relist, fresh) {
      if (!fresh) state.preset = "";
      presetSelect.value = state.preset;
      if (relist) listLayers();
      let message = "";
      try {
        state.rows = compute(state.layers, size);
      } catch (err) {  // show the layers before the one that failed
        message = err.message;
        state.rows = err.layer === undefined ? [] :
          compute(state.layers.slice(0, err.layer), size);
      }
      error.textContent = message;
      error.hidden = !message;
      if (fresh || state.layer >= state.rows.length) {
        state.layer = state.rows.length ? trunk(state.rows) : -1;
        state.unit = centre();
      }
      state.unit = state.unit.map(clampUnit);
      render();
    }

    function centre() {
      const row = state.rows[state.layer];
      return row ? [Math.floor(row.n / 2), Math.floor(row.n / 2)] : [0, 0];
    }

    function clampUnit(u) {
      const row = state.rows[state.layer];
      return row ? Math.min(Math.max(0, Math.round(u) || 0), row.n - 1) : 0;
    }

    function pick(i) {
      state.layer = i;
      state.unit = centre();
      render();
    }

    function unit() {
      state.unit = [clampUnit(+rowInput.value), clampUnit(+colInput.value)];
      render();
    }

    function kindSelect(layer, i) {
      const kinds = [["conv", "conv"], ["maxpool", "max-pool"],
                     ["avgpool", "avg-pool"], ["gap", "global avg-pool"]];
      const now = layer.global ? "gap" : layer.kind;
      const select = el("select", {"aria-label": `layer ${i + 1}: kind`}, ...kinds.map(
        ([value, text]) => el("option", {value, selected: value === now && "selected"},
                              text)));
      select.addEventListener("change", () => {
        const conv = select.value === "conv";
        const k = layer.global ? (conv ? 3 : 2) : layer.k;
        state.layers[i] = select.value === "gap" ? {kind: "avgpool", global: true} :
          Object.assign({kind: select.value, k, s: conv ? 1 : k, p: 0},
                        conv ? {d: 1} : {});
        edited(true);
      });
      return select;
    }

    function listLayers() {
      list.replaceChildren(...state.layers.map((layer, i) => {
        const keys = layer.global ? [] : layer.kind === "conv" ? ["k", "s", "p", "d"]
          : ["k", "s", "p"];
        const fields = keys.map((key) => el("label", {title: SETTINGS[key]}, `${key} `,
          el("input", {type: "number", step: 1, min: key === "p" ? 0 : 1,
                       inputmode: "numeric", value: layer[key] ?? "",
                       "aria-label": `layer ${i + 1}: ${SETTINGS[key]}`,
                       onchange: (event) => {
                         state.layers[i][key] = Number(event.target.value);
                         edited(false);
                       }})));
        const remove = el("button", {type: "button", class: "rf-remove",
                                     "aria-label": `remove layer ${i + 1}`,
                                     onclick: () => {
                                       state.layers.splice(i, 1);
                                       edited(true);
                                     }}, "✕");
        // The number the errors and the table give the layer ("layer 4"): an
        // <ol>'s own numbers vanish where its items are flex boxes.
        const index = el("span", {class: "rf-index", "aria-hidden": "true"},
                         `${i + 1}.`);
        return el("li", {}, index, kindSelect(layer, i), ...fields, remove);
      }));
    }

    function render() {
      renderTable();
      renderUnit();
      drawDigit();
      drawGrowth();
    }

    const rfText = (row) => (row.global ? `global (${num(row.r)})` : num(row.r));

    function renderTable() {
      const input = {n: size, j: 1, r: 1, start: 0.5, global: false};
      const body = [input, ...state.rows].map((row, i) => {
        const cells = [i ? `${i}` : "", i ? describe(state.layers[i - 1]) : "input",
                       num(row.n), row.j === null ? "—" : num(row.j), rfText(row),
                       num(row.start)];
        return el("tr", {class: i - 1 === state.layer && "rf-selected",
                         "data-layer": i ? i - 1 : false,
                         onclick: i ? () => pick(i - 1) : undefined},
          ...cells.map((text, c) => el("td", {class: c === 1 && "rf-name"}, text)));
      });
      const head = ["#", "layer", "n", "j", "r", "start"].map((text, c) =>
        el("th", {scope: "col", class: c === 1 && "rf-name"}, text));
      table.replaceChildren(
        el("caption", {}, "Per layer: map size n, jump j, RF r and the centre of ",
           "the first unit, start, in input pixels (one axis). Pick a row to see ",
           "its RF."),
        el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...body));
      const t = state.rows.length ? trunk(state.rows) : -1;
      const global = state.rows.some((row) => row.global);
      quote.textContent = t < 0 ? "" :
        `The RF to quote for this network: ${num(state.rows[t].r)} px, after ` +
        `layer ${t + 1}${global ? ", the last map before the global pooling" : ""}.`;
    }

    function renderUnit() {
      layerSelect.replaceChildren(...state.rows.map((row, i) =>
        el("option", {value: i, selected: i === state.layer && "selected"},
           `${i + 1}. ${describe(state.layers[i])} → ${row.n}×${row.n} map`)));
      const row = state.rows[state.layer];
      for (const [input, u] of [[rowInput, state.unit[0]], [colInput, state.unit[1]]]) {
        input.max = row ? row.n - 1 : 0;
        input.value = u;
        input.disabled = !row || row.n === 1;
      }
    }

    // The unit's RF in input pixels, [top, left, height, width].
    const box = () => unitBox(state.rows[state.layer], state.unit);

    // The pixels shown: the image, and the RF box where it reaches past it.
    function view() {
      if (!state.rows[state.layer]) return [-0.5, size + 0.5];
      const [top, left, h, w] = box();
      return [Math.min(0, top, left) - 0.5, Math.max(size, top + h, left + w) + 0.5];
    }

    function drawDigit() {
      const dpr = window.devicePixelRatio || 1;
      canvas.width = canvas.height = Math.round((canvas.clientWidth || 300) * dpr);
      const ctx = canvas.getContext("2d");
      const [lo, hi] = view();
      const scale = canvas.width / (hi - lo);
      const at = (v) => (v - lo) * scale;
      const dot = (x, y, radius) => {
        ctx.beginPath();
        ctx.arc(at(x), at(y), radius * dpr, 0, 2 * Math.PI);
        ctx.fill();
      };
      ctx.fillStyle = "#d9d9d9";  // outside the image: the padding
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      data.digit.pixels.forEach((line, y) => line.forEach((v, x) => {
        ctx.fillStyle = `rgb(${255 - v},${255 - v},${255 - v})`;  // ink dark
        ctx.fillRect(at(x), at(y), scale + 0.5, scale + 0.5);
      }));
      const row = state.rows[state.layer];
      if (!row) {
        canvas.setAttribute("aria-label", `A test digit, ${size}×${size} pixels.`);
        caption.textContent = "";
        return;
      }
      if (!row.global && row.n <= 32) {  // where the layer's units sit
        ctx.fillStyle = "rgba(31, 119, 180, 0.8)";
        for (let a = 0; a < row.n; a += 1) {
          for (let b = 0; b < row.n; b += 1) {
            dot(row.start + b * row.j, row.start + a * row.j, 2);
          }
        }
      }
      const [top, left, h, w] = box();
      ctx.strokeStyle = ctx.fillStyle = RED;
      ctx.lineWidth = 2.5 * dpr;
      ctx.setLineDash(row.global ? [6 * dpr, 4 * dpr] : []);
      ctx.strokeRect(at(left), at(top), w * scale, h * scale);
      dot(left + w / 2, top + h / 2, 4);
      describeUnit(row, top, left, h, w);
    }

    function describeUnit(row, top, left, h, w) {
      const digit = data.digit.label === null ? "a test digit"
        : `a test digit (a ${data.digit.label})`;
      const [a, b] = state.unit;
      const who = row.global ? "the global unit" : `unit (row ${a}, column ${b})`;
      const outside = top < 0 || left < 0 || top + h > size || left + w > size;
      const text = `The RF of ${who} after layer ${state.layer + 1} ` +
        `(${describe(state.layers[state.layer])}) on ${digit}: ` +
        (row.global ? "global, all the input its map saw, " : "") +
        `${num(h)}×${num(w)} pixels, rows ${num(top)} to ${num(top + h - 1)} and ` +
        `columns ${num(left)} to ${num(left + w - 1)}` +
        (outside ? ", partly outside the image (padding, grey)" : "") + ". " +
        (row.global ? "" : `Blue dots: where the layer's ${row.n}×${row.n} units ` +
                           `sit, ${num(row.j)} px apart.`);
      canvas.setAttribute("aria-label", text);
      caption.textContent = text;
    }

    // A click on the digit picks the unit whose centre is nearest.
    function clicked(event) {
      const row = state.rows[state.layer];
      if (!row || row.j === null) return;
      const [lo, hi] = view();
      const rect = canvas.getBoundingClientRect();
      const x = lo + (event.clientX - rect.left) / rect.width * (hi - lo);
      const y = lo + (event.clientY - rect.top) / rect.height * (hi - lo);
      state.unit = [(y - row.start) / row.j, (x - row.start) / row.j].map(clampUnit);
      render();
    }

    function drawGrowth() {
      const W = 480, H = 210, left = 44, right = 12, top = 12, bottom = 34;
      const points = [{r: 1, global: false}, ...state.rows];
      const most = Math.max(size, ...points.map((p) => p.r)) * 1.1;
      const x = (i) => left + i * (W - left - right) / Math.max(1, points.length - 1);
      const y = (r) => H - bottom - r / most * (H - top - bottom);
      const plain = {"font-size": 12, fill: "currentColor", "text-anchor": "middle"};
      const text = (attrs, words) => svg("text", {...plain, ...attrs}, words);
      plot.replaceChildren();
      const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
        .find((s) => most / s <= 6) || 5000;
      for (let t = 0; t <= most; t += step) {
        plot.append(svg("line", {x1: left, x2: W - right, y1: y(t), y2: y(t),
                                 stroke: "currentColor", "stroke-opacity": 0.15}),
                    text({x: left - 6, y: y(t) + 4, "text-anchor": "end"}, `${t}`));
      }
      // The input's size, labelled at the left, where the RF is still small.
      plot.append(svg("line", {x1: left, x2: W - right, y1: y(size), y2: y(size),
                               stroke: ORANGE, "stroke-dasharray": "6 4"}),
                  text({x: left + 6, y: y(size) + 15, "text-anchor": "start",
                        fill: ORANGE}, `input (${size} px)`),
                  svg("polyline", {points: points.map((p, i) => `${x(i)},${y(p.r)}`)
                    .join(" "), fill: "none", stroke: BLUE, "stroke-width": 2}));
      points.forEach((p, i) => {
        const chosen = i - 1 === state.layer;
        const colour = chosen ? RED : BLUE;
        plot.append(svg("circle", {cx: x(i), cy: y(p.r), r: chosen ? 6 : 4,
                                   fill: p.global ? "white" : colour, stroke: colour,
                                   "stroke-width": 2}),
                    text({x: x(i), y: H - bottom + 16, "font-size": 11},
                         i ? `${i}` : "in"));
      });
      const middle = (H - bottom) / 2;
      plot.append(text({x: (W + left) / 2, y: H - 4}, "layer"),
                  text({x: 12, y: middle, transform: `rotate(-90 12 ${middle})`},
                       "RF (px)"));
      plot.setAttribute("aria-label", "The RF after each layer: " +
        state.rows.map((row, i) => `${i + 1}: ${rfText(row)}`).join(", ") +
        `; the dashed line marks the ${size}-pixel input.`);
    }

    window.addEventListener("resize", drawDigit);
    choose(state.preset);
  }

  // Run once the page is read, when every script of the page (the
  // arithmetic's too, whatever their order) has run.
  function start() {
    const rf = window.rfArithmetic;
    window.rfExplorer = {compute: rf.compute, describe: rf.describe};
    const root = document.getElementById("rf-explorer");
    const source = document.getElementById("rf-presets");
    if (root && source) explorer(root, JSON.parse(source.textContent), rf);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
