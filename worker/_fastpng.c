/*
 * The loops of worker/fastpng.py that numpy cannot do in a pass or two:
 * undoing PNG row filters, the Chebyshev ink distance of a colour image, and
 * taking one channel (alpha) out of interleaved pixels.
 *
 * Optional: where no C compiler is at hand the package installs without it
 * and fastpng.py falls back to libspng (pyspng) and numpy, with the same output.
 *
 * Every function checks the sizes it is given before touching memory and
 * releases the GIL while it loops.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* PNG's Paeth predictor (ISO/IEC 15948, 9.4). */
static inline uint8_t paeth(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    if (pa <= pb && pa <= pc)
        return (uint8_t)a;
    return (uint8_t)(pb <= pc ? b : c);
}

/* One row of bpp-byte pixels, filter type ft (1, 3 or 4; 0 and 2 are plain
 * loops below). The left pixel (a) and the upper-left one (c) stay in
 * registers: through memory, each pixel would wait on the store of the last.
 * With the row above missing, prev points at a row of zeros. */
static inline void unfilter_left(int ft, const uint8_t *restrict in, const uint8_t *restrict prev,
                                 uint8_t *restrict out, Py_ssize_t w, const int bpp)
{
    int a[4] = {0, 0, 0, 0}, c[4] = {0, 0, 0, 0};
    for (Py_ssize_t x = 0; x < w; x++, in += bpp, prev += bpp, out += bpp) {
        for (int k = 0; k < bpp; k++) {
            const int b = prev[k];
            int p;
            if (ft == 1)
                p = a[k];
            else if (ft == 3)
                p = (a[k] + b) >> 1;
            else if (b == c[k])
                p = a[k]; /* Paeth picks the left pixel: cheap in flat areas */
            else
                p = paeth(a[k], b, c[k]);
            a[k] = (uint8_t)(in[k] + p);
            c[k] = b;
            out[k] = (uint8_t)a[k];
        }
    }
}

#define UNFILTER_FT(bpp)                                 \
    do {                                                 \
        if (ft == 1)                                     \
            unfilter_left(1, in, prev, out, w, bpp);     \
        else if (ft == 3)                                \
            unfilter_left(3, in, prev, out, w, bpp);     \
        else                                             \
            unfilter_left(4, in, prev, out, w, bpp);     \
    } while (0)

static void unfilter_row(int ft, const uint8_t *restrict in, const uint8_t *restrict prev,
                         uint8_t *restrict out, Py_ssize_t w, int bpp)
{
    /* Constant filter types and pixel sizes let the compiler specialise each loop. */
    switch (bpp) {
    case 1: UNFILTER_FT(1); break;
    case 2: UNFILTER_FT(2); break;
    case 3: UNFILTER_FT(3); break;
    default: UNFILTER_FT(4); break;
    }
}

/* Undo the filters of h rows of (1 + w * bpp) bytes into dst, using zeros
 * (w * bpp bytes) for the missing row above the first; returns
 * the first unknown filter type found, or -1 when every row was valid. */
static int unfilter_rows(const uint8_t *restrict src, uint8_t *restrict dst, const uint8_t *restrict zeros,
                         Py_ssize_t w, Py_ssize_t h, int bpp)
{
    const Py_ssize_t rowlen = w * bpp;
    const uint8_t *prev = zeros;
    for (Py_ssize_t y = 0; y < h; y++) {
        const int ft = src[0];
        const uint8_t *in = src + 1;
        switch (ft) {
        case 0: /* None */
            memcpy(dst, in, (size_t)rowlen);
            break;
        case 2: /* Up */
            for (Py_ssize_t i = 0; i < rowlen; i++)
                dst[i] = (uint8_t)(in[i] + prev[i]);
            break;
        case 1: /* Sub */
        case 3: /* Average */
        case 4: /* Paeth */
            unfilter_row(ft, in, prev, dst, w, bpp);
            break;
        default:
            return ft;
        }
        prev = dst;
        src += rowlen + 1;
        dst += rowlen;
    }
    return -1;
}

PyDoc_STRVAR(unfilter_doc,
"unfilter(scanlines, width, height, channels) -> bytes\n\n"
"The pixels (height * width * channels bytes, 8 bits per sample) of a\n"
"non-interlaced PNG's inflated image data: height rows of one filter-type\n"
"byte and width * channels filtered bytes. Raises ValueError when the length\n"
"does not match or a row has an unknown filter type.");

static PyObject *unfilter(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t w, h;
    int nc;
    if (!PyArg_ParseTuple(args, "y*nni:unfilter", &buf, &w, &h, &nc))
        return NULL;
    PyObject *res = NULL;
    if (w <= 0 || h <= 0 || nc < 1 || nc > 4 || w > PY_SSIZE_T_MAX / nc / h - 1) {
        PyErr_SetString(PyExc_ValueError, "invalid image size");
        goto done;
    }
    const Py_ssize_t rowlen = w * nc;
    if (buf.len != h * (rowlen + 1)) {
        PyErr_Format(PyExc_ValueError, "expected %zd bytes of scanlines, got %zd", h * (rowlen + 1), buf.len);
        goto done;
    }
    uint8_t *zeros = PyMem_Calloc((size_t)rowlen, 1);
    if (zeros == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    res = PyBytes_FromStringAndSize(NULL, h * rowlen);
    int bad = -1;
    if (res != NULL) {
        Py_BEGIN_ALLOW_THREADS
        bad = unfilter_rows((const uint8_t *)buf.buf, (uint8_t *)PyBytes_AS_STRING(res), zeros, w, h, nc);
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(zeros);
    if (bad >= 0) {
        Py_CLEAR(res);
        PyErr_Format(PyExc_ValueError, "unknown PNG filter type %d", bad);
    }
done:
    PyBuffer_Release(&buf);
    return res;
}

#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute) /* ifunc: ELF only */
#if __has_attribute(target_clones)
#define CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef CLONES
#define CLONES
#endif

static inline uint8_t absdiff(uint8_t x, uint8_t y) { return x > y ? x - y : y - x; }
static inline uint8_t max8(uint8_t x, uint8_t y) { return x > y ? x : y; }

/* Byte arithmetic only, and a constant stride, so that the compiler vectorises
 * it; stride 3 needs byte shuffles, which AVX2 has (a clone for older CPUs). */
#define CHEBYSHEV_LOOP(name, nc)                                                         \
    CLONES static void name(const uint8_t *restrict p, uint8_t *restrict out, Py_ssize_t n, \
                            uint8_t r0, uint8_t g0, uint8_t b0)                            \
    {                                                                                    \
        for (Py_ssize_t i = 0; i < n; i++)                                               \
            out[i] = max8(max8(absdiff(p[nc * i], r0), absdiff(p[nc * i + 1], g0)),     \
                          absdiff(p[nc * i + 2], b0));                                   \
    }
CHEBYSHEV_LOOP(chebyshev3, 3)
CHEBYSHEV_LOOP(chebyshev4, 4)

PyDoc_STRVAR(chebyshev_doc,
"chebyshev(pixels, channels, background) -> bytes\n\n"
"Per pixel, max over the first three channels of |value - background|, for\n"
"8-bit pixels of 3 or 4 channels (a fourth, alpha, is ignored). background\n"
"is a bytes object of 3 values. One byte per pixel.");

static PyObject *chebyshev(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer buf, bg;
    int nc;
    if (!PyArg_ParseTuple(args, "y*iy*:chebyshev", &buf, &nc, &bg))
        return NULL;
    PyObject *res = NULL;
    if ((nc != 3 && nc != 4) || bg.len != 3 || buf.len % nc != 0) {
        PyErr_SetString(PyExc_ValueError, "pixels must be whole 3- or 4-channel pixels, background 3 bytes");
        goto done;
    }
    const Py_ssize_t n = buf.len / nc;
    res = PyBytes_FromStringAndSize(NULL, n);
    if (res == NULL)
        goto done;
    const uint8_t *p = (const uint8_t *)buf.buf, *b = (const uint8_t *)bg.buf;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(res);
    Py_BEGIN_ALLOW_THREADS
    if (nc == 3)
        chebyshev3(p, out, n, b[0], b[1], b[2]);
    else
        chebyshev4(p, out, n, b[0], b[1], b[2]);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&bg);
    return res;
}

#define CHANNEL_LOOP(name, nc)                                                            \
    CLONES static void name(const uint8_t *restrict p, uint8_t *restrict out, Py_ssize_t n) \
    {                                                                                     \
        for (Py_ssize_t i = 0; i < n; i++)                                                \
            out[i] = p[nc * i];                                                           \
    }
CHANNEL_LOOP(channel_of2, 2)
CHANNEL_LOOP(channel_of4, 4)

PyDoc_STRVAR(channel_doc,
"channel(pixels, channels, index) -> bytes\n\n"
"Channel ``index`` of 8-bit interleaved pixels of 2 or 4 channels (grey and\n"
"alpha, RGBA), one byte per pixel.");

static PyObject *channel(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer buf;
    int nc, k;
    if (!PyArg_ParseTuple(args, "y*ii:channel", &buf, &nc, &k))
        return NULL;
    PyObject *res = NULL;
    if ((nc != 2 && nc != 4) || k < 0 || k >= nc || buf.len % nc != 0) {
        PyErr_SetString(PyExc_ValueError, "pixels must be whole 2- or 4-channel pixels, index below channels");
        goto done;
    }
    const Py_ssize_t n = buf.len / nc;
    res = PyBytes_FromStringAndSize(NULL, n);
    if (res == NULL)
        goto done;
    const uint8_t *p = (const uint8_t *)buf.buf + k;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(res);
    Py_BEGIN_ALLOW_THREADS
    if (nc == 2)
        channel_of2(p, out, n);
    else
        channel_of4(p, out, n);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&buf);
    return res;
}

static PyMethodDef methods[] = {
    {"unfilter", unfilter, METH_VARARGS, unfilter_doc},
    {"chebyshev", chebyshev, METH_VARARGS, chebyshev_doc},
    {"channel", channel, METH_VARARGS, channel_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "worker._fastpng",
    "Compiled loops of worker.fastpng: PNG row unfiltering, the ink distance, one channel.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpng(void)
{
    return PyModule_Create(&module);
}
