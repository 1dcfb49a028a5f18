/* A drawn digit made an MNIST digit, in the reader's browser, as
   mnist_lib.digit.read_digit makes one (the digit pad, play.js): the same
   steps, in the same order and the same arithmetic, so that the page's
   input is the library's to the last pixel (tests/test_play.py checks it).

   window.mnistDigit.mnistLike(grey, width, height, settings) takes grey
   levels (0-255, row-major) and mnist_lib.digit's constants ({frame, box,
   centre, noise}, written into the pad's model file at build time), and
   returns {pixels: 784 values 0-255 (28x28, white digit on black, row-major),
   inverted, box: [width, height], scaled: [width, height]}, or null where
   the image is all one shade. greyOf(imageData) is a canvas's pixels as
   grey levels, as Pillow's convert("L") gives them (an opaque canvas). */
(function () {
  "use strict";

  // Pillow's luminance for "L" (Convert.c): R 299/1000, G 587/1000,
  // B 114/1000 in 16-bit fixed point. The pad's canvas is opaque, so
  // read_digit's compositing over white leaves its pixels as they are.
  function greyOf(image) {
    const {data, width, height} = image;
    const grey = new Float64Array(width * height);
    for (let i = 0; i < grey.length; i += 1) {
      const [r, g, b] = [data[4 * i], data[4 * i + 1], data[4 * i + 2]];
      grey[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    }
    return grey;
  }

  // NumPy's median: the middle value, or the mean of the two middle ones.
  function median(values) {
    const v = Float64Array.from(values).sort();
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  }

  // Python's round() and NumPy's rint: halves to the even neighbour.
  function roundEven(x) {
    const f = Math.floor(x);
    const d = x - f;
    if (d !== 0.5) return Math.round(x);
    return f % 2 === 0 ? f : f + 1;
  }

  // NumPy's sum of a float64 vector: pairwise, 8 partial sums per block of
  // up to 128 (numpy/_core/src/umath/loops_utils.h.src). Only the last bit
  // can differ from a plain loop, which moves a digit by a pixel only where
  // its centre of mass falls exactly between two pixels: a symmetric shape.
  function pairwiseSum(v, lo = 0, n = v.length) {
    if (n < 8) {
      let s = 0;
      for (let i = lo; i < lo + n; i += 1) s += v[i];
      return s;
    }
    if (n <= 128) {
      const r = Array.from({length: 8}, (_, j) => v[lo + j]);
      let i = 8;
      for (; i < n - (n % 8); i += 8) {
        for (let j = 0; j < 8; j += 1) r[j] += v[lo + i + j];
      }
      let s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
      for (; i < n; i += 1) s += v[lo + i];
      return s;
    }
    let half = Math.floor(n / 2);
    half -= half % 8;
    return pairwiseSum(v, lo, half) + pairwiseSum(v, lo + half, n - half);
  }

  // Pillow's resampling filters, with their support (Resample.c).
  const FILTERS = {
    box: [(x) => (x > -0.5 && x <= 0.5 ? 1 : 0), 0.5],
    bilinear: [(x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0), 1],
  };

  // Pillow's precompute_coeffs: for each output pixel, the first input
  // pixel it reads and the weights of those it reads.
  function coefficients(inSize, outSize, [filter, support0]) {
    const scale = inSize / outSize;
    const filterscale = Math.max(scale, 1);
    const support = support0 * filterscale;
    const ss = 1 / filterscale;  // Pillow multiplies by it: the same last bit
    return Array.from({length: outSize}, (_, xx) => {
      const centre = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(centre + support + 0.5), inSize) - xmin;
      const k = Array.from({length: xmax},
                           (_, x) => filter((x + xmin - centre + 0.5) * ss));
      let ww = 0;
      for (const w of k) ww += w;
      return [xmin, ww === 0 ? k : k.map((w) => w / ww)];
    });
  }

  // Image.fromarray(a.astype(float32)).resize(size, filter) on an "F" image:
  // a horizontal pass, then a vertical one, each summed in double and
  // stored as float32 (Pillow's ImagingResample).
  function resize(a, width, height, outW, outH, filterName) {
    const filter = FILTERS[filterName];
    let img = Float64Array.from(a, Math.fround), w = width;
    if (outW !== width) {
      const out = new Float64Array(outW * height);
      coefficients(width, outW, filter).forEach(([xmin, k], xx) => {
        for (let y = 0; y < height; y += 1) {
          let ss = 0;
          for (let x = 0; x < k.length; x += 1) ss += img[y * w + xmin + x] * k[x];
          out[y * outW + xx] = Math.fround(ss);
        }
      });
      img = out;
      w = outW;
    }
    if (outH !== height) {
      const out = new Float64Array(w * outH);
      coefficients(height, outH, filter).forEach(([ymin, k], yy) => {
        for (let x = 0; x < w; x += 1) {
          let ss = 0;
          for (let y = 0; y < k.length; y += 1) ss += img[(ymin + y) * w + x] * k[y];
          out[yy * w + x] = Math.fround(ss);
        }
      });
      img = out;
    }
    return img;
  }

  // digit._centre_of_mass along rows (rows: true; NumPy sums each row
  // pairwise) or columns (summed row after row).
  function centreOfMass(a, w, h, rows) {
    const mass = new Float64Array(rows ? h : w);
    for (let y = 0; y < h; y += 1) {
      if (rows) mass[y] = pairwiseSum(a, y * w, w);
      else for (let x = 0; x < w; x += 1) mass[x] += a[y * w + x];
    }
    const moments = mass.map((m, i) => m * i);
    return pairwiseSum(moments) / pairwiseSum(mass);
  }

  function mnistLike(grey, width, height, {frame, box, centre, noise}) {
    // 2. White on black, levels stretched (grey levels came in: step 1).
    let a = Float64Array.from(grey);
    const border = [];
    for (let x = 0; x < width; x += 1) {
      border.push(a[x], a[(height - 1) * width + x]);
    }
    for (let y = 0; y < height; y += 1) {
      border.push(a[y * width], a[y * width + width - 1]);
    }
    const inverted = median(border) > 127.5;
    if (inverted) a = a.map((v) => 255 - v);
    const background = median(inverted ? border.map((v) => 255 - v) : border);
    let ink = -Infinity;
    for (const v of a) ink = Math.max(ink, v);
    if (ink - background < noise * 255) return null;
    a = a.map((v) => {
      const s = Math.min(Math.max((v - background) / (ink - background), 0), 1) * 255;
      return s < noise * 255 ? 0 : s;
    });

    // 3. The bounding box, scaled so that its longer side is `box` pixels.
    let top = height, bottom = -1, left = width, right = -1;
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        if (a[y * width + x] !== 0) {
          top = Math.min(top, y);
          bottom = Math.max(bottom, y);
          left = Math.min(left, x);
          right = Math.max(right, x);
        }
      }
    }
    const w = right - left + 1, h = bottom - top + 1;
    let cut = new Float64Array(w * h);
    for (let y = 0; y < h; y += 1) {
      for (let x = 0; x < w; x += 1) cut[y * w + x] = a[(top + y) * width + left + x];
    }
    const factor = box / Math.max(h, w);
    const sw = Math.max(1, roundEven(w * factor));
    const sh = Math.max(1, roundEven(h * factor));
    if (sw !== w || sh !== h) {
      cut = resize(cut, w, h, sw, sh, factor < 1 ? "box" : "bilinear");
    }

    // 4. Placed in the frame, its centre of mass within half a pixel of the
    // frame's centre (digit._place).
    const place = (c, n) =>
      Math.min(Math.max(Math.floor(centre - c + 0.5), 0), frame - n);
    const y0 = place(centreOfMass(cut, sw, sh, true), sh);
    const x0 = place(centreOfMass(cut, sw, sh, false), sw);
    const pixels = new Uint8Array(frame * frame);
    for (let y = 0; y < sh; y += 1) {
      for (let x = 0; x < sw; x += 1) {
        const v = roundEven(cut[y * sw + x]);
        pixels[(y0 + y) * frame + x0 + x] = Math.min(Math.max(v, 0), 255);
      }
    }
    return {pixels, inverted, box: [w, h], scaled: [sw, sh]};
  }

  window.mnistDigit = {mnistLike, greyOf};
})();
