/* The receptive-field arithmetic of mnist_lib.rf (mnist_lib/rf/axis.py) in
   the reader's browser, one implementation for the two pages that use it:
   the RF explorer (rf_explorer.js, chapter "Receptive fields") and the digit
   pad (play.js, "Draw a digit"). No server, no network.

   window.rfArithmetic.compute(layers, size) is that arithmetic along one axis
   of a square input of `size` pixels: per layer {n, j, r, start}, the map's
   size, the jump, the RF and the centre of the first unit (pixel i spans
   [i, i+1], so the input's first unit is at 0.5). A layer is {kind: "conv" |
   "maxpool" | "avgpool", k, s, p, d}: d (dilation) for a convolution only,
   default 1; s defaults to 1 for a convolution and to k for a pool, as in
   PyTorch; p to 0. The map size is PyTorch's floor: ceil_mode is not offered.
   {kind: "avgpool", global: true} is a global average pooling (k: the whole
   map), which the calculator calls "global": every unit then sees all the
   input the map before it sees, r keeps the RF of the convolutional path,
   the row has global: true, span: the pixels that input covers, and j: null
   while the map is one unit. A window that does not fit the map (the map
   vanishes), a setting that is not a whole number in range, or a pool padded
   by more than half its window (PyTorch refuses it) throws an Error whose
   message names the layer, "layer 4 (max-pool 2): ...", and whose `layer` is
   its index in `layers`.

   describe(layer): the layer in words ("conv 3×3 s2 p1"); trunk(rows): the
   row whose RF to quote; unitBox(row, [a, b]): the RF of unit (a, b) of a
   row's map in input pixels. */
(function () {
  "use strict";

  const KINDS = {conv: "conv", maxpool: "max-pool", avgpool: "avg-pool"};
  const SETTINGS = {k: "kernel size", s: "stride", p: "padding", d: "dilation"};

  function describe(layer) {
    if (layer.global) return "global avg-pool";
    const name = KINDS[layer.kind] || String(layer.kind);
    const k = layer.kind === "conv" ? `${layer.k}×${layer.k}` : `${layer.k}`;
    const extra = [["s", 1], ["p", 0], ["d", 1]]
      .filter(([key, plain]) => layer[key] !== undefined && layer[key] !== plain &&
              !(key === "s" && layer.kind !== "conv" && layer.s === layer.k))
      .map(([key]) => `${key}${layer[key]}`);
    return [name, k, ...extra].join(" ");
  }

  function fail(message, i) {
    const err = new Error(message);
    err.layer = i;
    return err;
  }

  function setting(layer, key, fallback, least, where, i) {
    const v = layer[key] === undefined || layer[key] === null ? fallback : layer[key];
    if (!Number.isInteger(v) || v < least) {
      throw fail(`${where}: the ${SETTINGS[key]} must be a whole number ` +
                 `of at least ${least}, not ${v}`, i);
    }
    return v;
  }

  function compute(layers, size) {
    if (!Number.isInteger(size) || size < 1) {
      throw new Error(`the input's size must be a whole number of pixels, not ${size}`);
    }
    // One axis: size, jump, RF, centre of the first unit; span: the pixels
    // one unit depends on (the RF, or more once a global pooling took a map).
    let n = size, j = 1, r = 1, start = 0.5, span = 1, global = false;
    return layers.map((layer, i) => {
      const where = `layer ${i + 1} (${describe(layer)})`;
      if (!(layer.kind in KINDS)) {
        throw fail(`${where}: unknown kind; use "conv", "maxpool" or "avgpool"`, i);
      }
      // A pooling whose one window covers the whole map, unpadded, is a
      // global pooling too (AvgPool2d(4) on a 4x4 map), as the calculator says.
      const covers = layer.kind !== "conv" && layer.k === n && !layer.p;
      if ((layer.global && layer.kind === "avgpool") || covers) {
        // Axis.whole: one unit that pools the whole map (nothing to pool
        // in a one-unit map). r stays the convolutional path's RF.
        if (n > 1) {
          start += (n - 1) / 2 * j;
          span += (n - 1) * j;
          j *= n;
          n = 1;
          global = true;
        }
      } else {
        const conv = layer.kind === "conv";
        const k = setting(layer, "k", undefined, 1, where, i);
        const s = setting(layer, "s", conv ? 1 : k, 1, where, i);
        const p = setting(layer, "p", 0, 0, where, i);
        const d = conv ? setting(layer, "d", 1, 1, where, i) : 1;
        if (!conv && layer.d !== undefined && layer.d !== 1) {
          throw fail(`${where}: the explorer dilates convolutions only`, i);
        }
        if (!conv && 2 * p > k) {
          throw fail(`${where}: padding ${p} is more than half the ${k}-px ` +
                     "window, which PyTorch refuses for a pool", i);
        }
        // Axis.window: the recurrence of the chapter.
        const kEff = d * (k - 1) + 1;
        const room = n + 2 * p - kEff;
        if (room < 0) {
          throw fail(`${where}: its ${kEff}-px window does not fit the ${n}-px ` +
                     `map${p ? ` padded by ${p}` : ""}: the map vanishes`, i);
        }
        start += ((kEff - 1) / 2 - p) * j;
        r += (kEff - 1) * j;
        span += (kEff - 1) * j;
        n = Math.floor(room / s) + 1;
        j *= s;
      }
      return {n, j: global && n === 1 ? null : j, r, start, global, span};
    });
  }

  // The row whose RF to quote, as mnist_lib.rf's trunk: the last map before
  // the global pooling, else the layer that made the output's map.
  function trunk(rows) {
    const g = rows.findIndex((row) => row.global);
    if (g < 0) {
      let end = rows.length - 1;
      const same = (a, b) => a.n === b.n && a.r === b.r;
      while (end > 0 && same(rows[end - 1], rows[end])) end -= 1;
      return end;
    }
    for (let i = g - 1; i >= 0; i -= 1) if (rows[i].n !== 1) return i;
    return g;
  }

  // The RF of unit (a, b) of a row's map in input pixels, [top, left, height,
  // width], pixel i spanning [i, i+1] (mnist_lib.rf.unit_box); a global
  // unit's: all the input its map saw.
  function unitBox(row, [a, b]) {
    const extent = row.global ? row.span : row.r;
    const step = row.j === null ? 0 : row.j;
    return [row.start + a * step - extent / 2, row.start + b * step - extent / 2,
            extent, extent];
  }

  window.rfArithmetic = {compute, describe, trunk, unitBox, SETTINGS};
})();
