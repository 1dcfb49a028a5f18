/* The digit pad's network (play.js), run in plain JavaScript on the layers
   and weights that mnist_lib.pad.model_json exports at build time: what
   PyTorch computes in eval mode, layer by layer, in float64.

   window.padModel.forward(model, pixels) takes 28x28 pixels in [0, 1]
   (row-major, ink 1), normalises them as the model was trained, and returns
   every layer's output, a map {c, h, w, data} (data channel by channel, each
   row-major; a vector is a 1x1 map); logProbs(model, pixels) returns the
   last one, the 10 log-probabilities. A layer is {name, kind, ...}: "conv"
   {k, s, p, d, groups, c_in, c_out, weight (c_out, c_in / groups, k, k),
   bias or null}, "batchnorm" {scale, shift} (eval mode: an affine map per
   channel), "relu", "maxpool" {k, s, p}, "avgpool" {global: true},
   "flatten", "linear" {c_in, c_out, weight (c_out, c_in), bias},
   "log_softmax". */
(function () {
  "use strict";

  const map = (c, h, w) => ({c, h, w, data: new Float64Array(c * h * w)});

  function conv(x, L) {
    const n = (size) => Math.floor((size + 2 * L.p - L.d * (L.k - 1) - 1) / L.s) + 1;
    const y = map(L.c_out, n(x.h), n(x.w));
    const inG = L.c_in / L.groups, outG = L.c_out / L.groups;
    for (let o = 0; o < L.c_out; o += 1) {
      const g = Math.floor(o / outG);
      for (let oy = 0; oy < y.h; oy += 1) {
        for (let ox = 0; ox < y.w; ox += 1) {
          let sum = L.bias ? L.bias[o] : 0;
          for (let i = 0; i < inG; i += 1) {
            const plane = (g * inG + i) * x.h * x.w;
            const kernel = (o * inG + i) * L.k * L.k;
            for (let ky = 0; ky < L.k; ky += 1) {
              const iy = oy * L.s - L.p + ky * L.d;
              if (iy < 0 || iy >= x.h) continue;  // zero padding
              for (let kx = 0; kx < L.k; kx += 1) {
                const ix = ox * L.s - L.p + kx * L.d;
                if (ix < 0 || ix >= x.w) continue;
                sum += L.weight[kernel + ky * L.k + kx] * x.data[plane + iy * x.w + ix];
              }
            }
          }
          y.data[(o * y.h + oy) * y.w + ox] = sum;
        }
      }
    }
    return y;
  }

  function maxpool(x, L) {
    const n = (size) => Math.floor((size + 2 * L.p - L.k) / L.s) + 1;
    const y = map(x.c, n(x.h), n(x.w));
    for (let c = 0; c < x.c; c += 1) {
      for (let oy = 0; oy < y.h; oy += 1) {
        for (let ox = 0; ox < y.w; ox += 1) {
          let best = -Infinity;  // padding never wins
          for (let ky = 0; ky < L.k; ky += 1) {
            for (let kx = 0; kx < L.k; kx += 1) {
              const iy = oy * L.s - L.p + ky, ix = ox * L.s - L.p + kx;
              if (iy >= 0 && iy < x.h && ix >= 0 && ix < x.w) {
                best = Math.max(best, x.data[(c * x.h + iy) * x.w + ix]);
              }
            }
          }
          y.data[(c * y.h + oy) * y.w + ox] = best;
        }
      }
    }
    return y;
  }

  const RUN = {
    conv,
    maxpool,
    avgpool(x, L) {
      if (!L.global) {
        throw new Error(`${L.name}: only a global average pooling runs here`);
      }
      const y = map(x.c, 1, 1), size = x.h * x.w;
      for (let c = 0; c < x.c; c += 1) {
        let sum = 0;
        for (let i = 0; i < size; i += 1) sum += x.data[c * size + i];
        y.data[c] = sum / size;
      }
      return y;
    },
    batchnorm(x, L) {
      const y = map(x.c, x.h, x.w), size = x.h * x.w;
      x.data.forEach((v, i) => {
        const c = Math.floor(i / size);
        y.data[i] = v * L.scale[c] + L.shift[c];
      });
      return y;
    },
    relu: (x) => ({...x, data: x.data.map((v) => Math.max(v, 0))}),
    flatten: (x) => ({c: x.data.length, h: 1, w: 1, data: x.data}),
    linear(x, L) {
      const y = map(L.c_out, 1, 1);
      for (let o = 0; o < L.c_out; o += 1) {
        let sum = L.bias ? L.bias[o] : 0;
        for (let i = 0; i < L.c_in; i += 1) sum += L.weight[o * L.c_in + i] * x.data[i];
        y.data[o] = sum;
      }
      return y;
    },
    log_softmax(x) {
      let most = -Infinity;
      for (const v of x.data) most = Math.max(most, v);
      let sum = 0;
      for (const v of x.data) sum += Math.exp(v - most);
      const lse = most + Math.log(sum);
      return {...x, data: x.data.map((v) => v - lse)};
    },
  };

  function forward(model, pixels) {
    const size = model.digit.frame;
    if (pixels.length !== size * size) {
      throw new Error(`expected ${size}×${size} = ${size * size} pixels, ` +
                      `got ${pixels.length}`);
    }
    const {mean, std} = model.normalization;
    const data = Float64Array.from(pixels, (v) => (v - mean) / std);
    let x = {c: 1, h: size, w: size, data};
    return model.layers.map((layer) => {
      const run = RUN[layer.kind];
      if (!run) {
        throw new Error(`${layer.name}: no layer of kind "${layer.kind}" runs here`);
      }
      x = run(x, layer);
      return x;
    });
  }

  function logProbs(model, pixels) {
    const outputs = forward(model, pixels);
    return Array.from(outputs[outputs.length - 1].data);
  }

  window.padModel = {forward, logProbs};
})();
