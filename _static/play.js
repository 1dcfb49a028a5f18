/* The digit pad of the page "Draw a digit" (book/play.md): the reader draws
   a digit, or picks a test digit, and the book's final model, run here
   (pad_model.js), says what it reads: the ten probabilities, a few feature
   maps of every layer, and the receptive field of a unit of the last map
   (rf_arithmetic.js, the RF explorer's arithmetic). No server, no network
   but the page's own files.

   It fills the element with id "digit-pad", whose attributes name the files
   that _ext/digit_pad.py writes next to the page at build time: data-model
   (layers and weights, mnist_lib.pad.model_json), data-digits (test digits,
   mnist_lib.pad.digits_json) and data-checkpoint (the PyTorch checkpoint
   the weights come from, for readers to download).

   window.mnistPlay, for outside checks (tests/test_play.py):
     checkpoint        the checkpoint's URL, relative to the page
     ready             a Promise, resolved once the model is loaded
     logProbs(pixels)  784 numbers in [0, 1] (28x28, row-major, ink 1,
                       already MNIST-like) -> the 10 log-probabilities
     mnistLike(grey, width, height)   mnist_digit.js with the model's settings
     input()           the 28x28 input shown now (values 0-255), or null */
(function () {
  "use strict";

  const SIZE = 280;        // the drawing area, in canvas pixels
  const BRUSH = 20;        // the pen's width there
  const SHOWN = 4;         // channels shown per layer: those that vary most
  const THUMB = 56;        // their pictures' size, in canvas pixels at least
  const RED = "#d62728";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== false && value !== undefined) node.setAttribute(key, value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  const percent = (p) => (p < 0.001 ? "<0.1%" : `${(100 * p).toFixed(1)}%`);
  const decode = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

  // The layers in stages as the page shows them: a convolution, pooling or
  // linear layer, with the BatchNorm and activation after it. A flatten
  // belongs to none: the stage before it ends on its last map.
  function stages(layers) {
    const out = [];
    layers.forEach((layer, i) => {
      if (layer.kind === "flatten") return;
      const opens = ["conv", "maxpool", "avgpool", "linear"].includes(layer.kind);
      if (opens || !out.length) out.push({first: i, last: i, layer});
      else out[out.length - 1].last = i;
    });
    return out;
  }

  function pad(root, model, digits, rf) {
    const frame = model.digit.frame;
    const layerStages = stages(model.layers);
    // The RF rows: one per window (convolution or pooling), in order.
    const windows = layerStages.filter((s) => s.layer.kind !== "linear");
    const rows = rf.compute(windows.map((s) => s.layer), frame);
    const trunk = windows[rf.trunk(rows)];
    const trunkRow = rows[rf.trunk(rows)];
    // source: "none", "drawn", "test" (a test digit) or "edited" (a test
    // digit with the reader's strokes); example: the digit the page opened on.
    const state = {input: null, label: null, source: "none", outputs: null,
                   example: false, channels: [], index: null, made: null,
                   unit: [trunkRow.n >> 1, trunkRow.n >> 1], pen: null,
                   queued: false};

    // ------------------------------------------------------ the drawing area
    const canvas = el("canvas", {
      class: "pad-canvas", width: SIZE, height: SIZE, role: "img",
      "aria-label": "Drawing area: draw one digit with a mouse, a pen or a finger"});
    const ctx = canvas.getContext("2d", {willReadFrequently: true});
    const clear = () => {
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, SIZE, SIZE);
    };
    const at = (e) => {
      const box = canvas.getBoundingClientRect();
      return [(e.clientX - box.left) * SIZE / box.width,
              (e.clientY - box.top) * SIZE / box.height];
    };
    function stroke(from, to) {
      ctx.strokeStyle = ctx.fillStyle = "#000";
      ctx.lineWidth = BRUSH;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.arc(to[0], to[1], BRUSH / 2, 0, 2 * Math.PI);
      ctx.fill();
      ctx.beginPath();
      ctx.moveTo(...from);
      ctx.lineTo(...to);
      ctx.stroke();
    }
    canvas.addEventListener("pointerdown", (e) => {
      if (e.pointerType === "mouse" && e.button !== 0) return;
      e.preventDefault();
      canvas.setPointerCapture(e.pointerId);
      // The digit shown when the page opened makes way for the reader's own.
      // A test digit the reader picked stays, to draw on (Exercise 2), and
      // keeps its 28x28 frame: no new box, no re-centring (`update`).
      if (state.example) {
        clear();
        state.source = "none";
      }
      state.example = false;
      state.pen = at(e);
      state.source = state.source === "test" || state.source === "edited" ?
        "edited" : "drawn";
      state.label = null;
      stroke(state.pen, state.pen);
      schedule();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!state.pen) return;
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
      for (const event of events.length ? events : [e]) {
        const point = at(event);
        stroke(state.pen, point);
        state.pen = point;
      }
      schedule();
    });
    for (const end of ["pointerup", "pointercancel"]) {
      canvas.addEventListener(end, () => {
        state.pen = null;
      });
    }

    const select = el("select", {id: "pad-digit", onchange: () => {
      state.example = false;
      if (select.value !== "") load(digits[+select.value]);
    }}, el("option", {value: ""}, "Pick one…"));
    const wrong = (d) => d.predicted !== d.label;
    const groups = [["Digits the model reads wrong", wrong],
                    ["Digits it reads right", (d) => !wrong(d)]];
    for (const [title, keep] of groups) {
      const options = digits.map((d, i) => [d, i]).filter(([d]) => keep(d))
        .map(([d, i]) => el("option", {value: i}, `#${d.index}: a ${d.label}` +
                            (wrong(d) ? `, read as ${d.predicted}` : "")));
      if (options.length) select.append(el("optgroup", {label: title}, ...options));
    }
    const clearButton = el("button", {type: "button", onclick: () => {
      clear();
      state.source = "none";
      state.label = null;
      select.value = "";
      schedule();
    }}, "Clear");

    // A test digit: shown on the pad, large, and given to the model as it is.
    function load(digit) {
      const pixels = decode(digit.pixels);
      const cell = SIZE / frame;
      clear();
      pixels.forEach((v, i) => {
        ctx.fillStyle = `rgb(${255 - v},${255 - v},${255 - v})`;
        ctx.fillRect((i % frame) * cell, Math.floor(i / frame) * cell, cell, cell);
      });
      state.source = "test";
      state.input = pixels;
      state.label = digit.label;
      state.index = digit.index;
      schedule();
    }

    // ------------------------------------------------------------ the input
    const inputCanvas = el("canvas", {class: "pad-input", width: 240, height: 240,
                                      role: "img"});
    const inputCaption = el("figcaption", {id: "pad-input-caption",
                                           "aria-live": "polite"});
    const unitInput = (id) => el("input", {
      id, type: "number", min: 0, max: trunkRow.n - 1, step: 1, inputmode: "numeric",
      onchange: () => pick([+rowInput.value, +colInput.value])});
    const rowInput = unitInput("pad-row"), colInput = unitInput("pad-col");
    const trunkIndex = layerStages.indexOf(trunk) + 1;
    // What the input picture shows: the image, and the RF boxes of the
    // corner units, which reach into the padding.
    const corner = rf.unitBox(trunkRow, [0, 0]);
    const far = rf.unitBox(trunkRow, [trunkRow.n - 1, trunkRow.n - 1]);
    const lo = Math.min(0, corner[0]) - 0.5;
    const hi = Math.max(frame, far[0] + far[2]) + 0.5;

    function pick(unit) {
      const last = trunkRow.n - 1;
      state.unit = unit.map((u) => Math.min(Math.max(Math.round(u) || 0, 0), last));
      render();
    }
    inputCanvas.addEventListener("click", (e) => {
      const box = inputCanvas.getBoundingClientRect();
      const x = lo + (e.clientX - box.left) / box.width * (hi - lo);
      const y = lo + (e.clientY - box.top) / box.height * (hi - lo);
      pick([(y - trunkRow.start) / trunkRow.j, (x - trunkRow.start) / trunkRow.j]);
    });

    // ------------------------------------------------- probabilities, maps
    const answer = el("p", {class: "pad-answer", "aria-live": "polite"});
    const bars = Array.from({length: 10}, (_, d) => {
      const fill = el("span", {class: "pad-fill"});
      const value = el("span", {class: "pad-value"});
      const row = el("div", {class: "pad-bar"},
                     el("span", {class: "pad-digit"}, `${d}`),
                     el("span", {class: "pad-track", "aria-hidden": "true"}, fill),
                     value);
      return {row, fill, value};
    });
    const maps = el("div", {class: "pad-maps"});
    const download = el("p", {class: "pad-download"},
      el("a", {href: root.dataset.checkpoint, download: ""}, "Download the checkpoint"),
      " the page runs (open it with ", el("code", {}, "mnist_lib.load_checkpoint"),
      ").");

    root.replaceChildren(
      el("div", {class: "pad-panels"},
         el("figure", {class: "pad-figure"}, canvas,
            el("div", {class: "pad-controls"}, clearButton,
               el("label", {for: "pad-digit"}, "Or a test digit: "), select),
            el("figcaption", {}, "Draw one digit, any size, anywhere in the box.")),
         el("figure", {class: "pad-figure"}, inputCanvas, inputCaption,
            el("div", {class: "pad-unit"},
               el("span", {}, `Unit of layer ${trunkIndex}:`),
               el("label", {}, "row ", rowInput),
               el("label", {}, "column ", colInput)))),
      el("figure", {class: "pad-probs"}, answer,
         el("div", {class: "pad-bars"}, ...bars.map((b) => b.row))),
      maps, download);

    // -------------------------------------------------------------- update
    function schedule() {
      if (state.queued) return;
      state.queued = true;
      requestAnimationFrame(() => {
        state.queued = false;
        update();
      });
    }

    // A test digit with the reader's strokes on it, kept in its frame: the
    // ink of each 10x10 block of the pad, averaged (a test digit drawn on
    // the pad comes back exactly; a stroke adds its share of each block).
    function cells(grey) {
      const cell = SIZE / frame;
      const ink = new Uint8Array(frame * frame);
      for (let i = 0; i < ink.length; i += 1) {
        const top = Math.floor(i / frame) * cell, left = (i % frame) * cell;
        let sum = 0;
        for (let y = top; y < top + cell; y += 1) {
          for (let x = left; x < left + cell; x += 1) sum += 255 - grey[y * SIZE + x];
        }
        ink[i] = Math.round(sum / (cell * cell));
      }
      return ink;
    }

    function update() {
      if (state.source === "drawn") {
        const grey = window.mnistDigit.greyOf(ctx.getImageData(0, 0, SIZE, SIZE));
        const made = window.mnistDigit.mnistLike(grey, SIZE, SIZE, model.digit);
        state.input = made && made.pixels;
        state.made = made;
      } else if (state.source === "edited") {
        state.input = cells(window.mnistDigit.greyOf(
          ctx.getImageData(0, 0, SIZE, SIZE)));
      } else if (state.source === "none") {
        state.input = null;
      }
      state.outputs = state.input && window.padModel.forward(
        model, Array.from(state.input, (v) => v / 255));
      render();
    }

    function render() {
      drawInput();
      drawProbabilities();
      drawMaps();
      rowInput.value = state.unit[0];
      colInput.value = state.unit[1];
    }

    function drawInput() {
      const c = inputCanvas.getContext("2d");
      const scale = inputCanvas.width / (hi - lo);
      const x = (v) => (v - lo) * scale;
      c.fillStyle = "#d9d9d9";  // outside the image: the padding
      c.fillRect(0, 0, inputCanvas.width, inputCanvas.height);
      for (let i = 0; i < frame * frame; i += 1) {
        const v = state.input ? state.input[i] : 0;  // white ink on black, as MNIST's
        c.fillStyle = `rgb(${v},${v},${v})`;
        c.fillRect(x(i % frame), x(Math.floor(i / frame)), scale + 0.5, scale + 0.5);
      }
      const [top, left, h, w] = rf.unitBox(trunkRow, state.unit);
      c.strokeStyle = RED;
      c.lineWidth = 2.5;
      c.strokeRect(x(left), x(top), w * scale, h * scale);
      const n = trunkRow.n;
      const where = `unit (row ${state.unit[0]}, column ${state.unit[1]}) of layer ` +
        `${trunkIndex}'s ${n}×${n} maps`;
      const made = state.source === "drawn" && state.made;
      const how = made ? `Your drawing's ${made.box.join("×")}-pixel box, scaled to ` +
        `${made.scaled.join("×")} and centred by its centre of mass. ` :
        state.source === "test" ? `Test digit #${state.index}, as MNIST stores it. `
          : state.source === "edited" ? `Test digit #${state.index} with your ` +
            "strokes, in its own frame (no new box, no re-centring). " : "";
      const text = `What the model sees: ${frame}×${frame} pixels. ${how}` +
        `Red box: the receptive field of ${where}, ${h}×${w} pixels, rows ` +
        `${top} to ${top + h - 1}, columns ${left} to ${left + w - 1}` +
        (top < 0 || left < 0 || top + h > frame || left + w > frame ?
          " (partly outside the image: padding, grey)." : ".");
      inputCaption.textContent = text;
      inputCanvas.setAttribute("aria-label", text);
    }

    function drawProbabilities() {
      if (!state.outputs) {
        answer.textContent =
          "Draw a digit, or pick a test digit, to see what the model reads.";
        bars.forEach((b) => {
          b.fill.style.width = "0";
          b.value.textContent = "";
        });
        return;
      }
      const logp = state.outputs[state.outputs.length - 1].data;
      const p = Array.from(logp, Math.exp);
      const best = p.indexOf(Math.max(...p));
      answer.textContent = `The model reads a ${best} (${percent(p[best])}).` +
        (state.label === null ? "" : ` This test digit is a ${state.label}.`);
      bars.forEach((b, d) => {
        b.fill.style.width = `${100 * p[d]}%`;
        b.value.textContent = percent(p[d]);
        b.row.classList.toggle("pad-best", d === best);
      });
    }

    function drawMaps() {
      if (!state.outputs) {
        maps.replaceChildren();
        return;
      }
      const shown = layerStages.map((stage, i) => [stage, i])
        .filter(([stage]) => state.outputs[stage.last].h > 1);
      maps.replaceChildren(...shown.map(([stage, i]) => {
        const out = state.outputs[stage.last];
        const size = out.h * out.w;
        // Each channel's spread over its map (standard deviation): a
        // channel lit everywhere, as by the background, has little.
        const spread = Array.from({length: out.c}, (_, c) => {
          const map = out.data.subarray(c * size, (c + 1) * size);
          const m = map.reduce((s, v) => s + v, 0) / size;
          return Math.sqrt(map.reduce((s, v) => s + (v - m) ** 2, 0) / size);
        });
        // On a test digit the reader draws on, the channels stay those the
        // digit showed alone, so that before and after compare.
        const kept = state.source === "edited" && state.channels[i];
        const channels = kept || spread.map((v, c) => [v, c])
          .sort((a, b) => b[0] - a[0]).slice(0, SHOWN).map(([, c]) => c);
        state.channels[i] = channels;
        const isTrunk = stage === trunk;
        const title = `Layer ${i + 1}: ${rf.describe(stage.layer)}, ` +
          `${out.h}×${out.w} maps, ${out.c} channels; ` +
          `the ${channels.length} that vary most` +
          (kept ? ` on test digit #${state.index} alone` : "");
        return el("div", {class: "pad-layer" + (isTrunk ? " pad-trunk" : "")},
                  el("p", {class: "pad-layer-title"}, title),
                  el("div", {class: "pad-thumbs"},
                     ...channels.map((c) => thumb(out, c, isTrunk))));
      }));
    }

    // One channel's map, each unit's grey scaled to the map's largest.
    function thumb(out, c, isTrunk) {
      const scale = Math.ceil(THUMB / out.w);
      const canvas = el("canvas", {class: "pad-thumb", width: out.w * scale,
                                   height: out.h * scale, role: "img",
                                   "aria-label": `channel ${c}`});
      const g = canvas.getContext("2d");
      const data = out.data.subarray(c * out.h * out.w, (c + 1) * out.h * out.w);
      const most = Math.max(...data);
      data.forEach((v, i) => {
        const level = most > 0 ? Math.round(255 * Math.max(v, 0) / most) : 0;
        g.fillStyle = `rgb(${level},${level},${level})`;
        g.fillRect((i % out.w) * scale, Math.floor(i / out.w) * scale, scale, scale);
      });
      if (isTrunk) {
        g.strokeStyle = RED;
        g.lineWidth = Math.max(2, scale / 4);
        g.strokeRect(state.unit[1] * scale, state.unit[0] * scale, scale, scale);
        canvas.addEventListener("click", (e) => {
          const box = canvas.getBoundingClientRect();
          pick([Math.floor((e.clientY - box.top) / box.height * out.h),
                Math.floor((e.clientX - box.left) / box.width * out.w)]);
        });
      }
      return el("figure", {class: "pad-channel"}, canvas,
                el("figcaption", {}, `channel ${c}`));
    }

    clear();
    if (digits.length) {
      load(digits[0]);
      state.example = true;
    } else {
      schedule();
    }
    return {input: () => (state.input ? Array.from(state.input) : null)};
  }

  // Run once the page is read, when every script of the page (the
  // arithmetic's and the model's too, whatever their order) has run.
  function start() {
    const root = document.getElementById("digit-pad");
    if (!root) return;
    const url = (name) => new URL(root.dataset[name], document.baseURI).href;
    const play = window.mnistPlay = {checkpoint: root.dataset.checkpoint};
    root.replaceChildren(el("p", {class: "pad-status"}, "Loading the model…"));
    play.ready = Promise.all(["model", "digits"].map((name) =>
      fetch(url(name)).then((r) => {
        if (!r.ok) {
          throw new Error(`${root.dataset[name]}: ${r.status} ${r.statusText}`);
        }
        return r.json();
      })))
      .then(([model, digits]) => {
        for (const layer of model.layers) {
          for (const key of ["weight", "bias", "scale", "shift"]) {
            if (layer[key]) layer[key] = Float64Array.from(layer[key]);
          }
        }
        play.model = model;
        play.logProbs = (pixels) => window.padModel.logProbs(model, pixels);
        play.mnistLike = (grey, width, height) =>
          window.mnistDigit.mnistLike(grey, width, height, model.digit);
        play.input = pad(root, model, digits.digits, window.rfArithmetic).input;
      })
      .catch((err) => {
        root.replaceChildren(el("p", {class: "pad-status", role: "alert"},
                                `The digit pad could not start: ${err.message}`));
        throw err;
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
