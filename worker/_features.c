/* The model's features (worker.features.DeskewedFeatures) in one compiled pass.
 *
 * Per 28x28 image: moment deskewing, HOG of the deskewed image (signed
 * orientations linearly split between their two nearest bins, pooled over
 * cells with bilinear weights, each cell normalised by the energy of its 2x2
 * cell blocks, square-rooted) and its pixels average-pooled. The same
 * arithmetic as the numpy code in worker/features.py, image by image in the
 * CPU's caches instead of batch-wide arrays; sums run in another order, so
 * the two agree to float32 rounding (tests/test_features.py checks both).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define S 28
#define MAX_BINS 64

/* Bilinear weight of coordinate x for cell i (worker.features._cell_weights). */
static float cell_weight(int i, int x, int cell)
{
    double centre = (i + 0.5) * cell - 0.5;
    double w = 1.0 - fabs((double)x - centre) / cell;
    return w > 0.0 ? (float)w : 0.0f;
}

typedef struct {
    int bins, pool, nc, k;
    /* the (at most two) cells each coordinate falls in, with their weights */
    int cells[S][2];
    float weights[S][2];
    int ncells[S];
} Plan;

static void deskew(const float *X, float *D, float max_skew)
{
    /* raw moments in one pass, in double: the central ones follow exactly enough */
    double m = 0.0, sy = 0.0, sx = 0.0, sxy = 0.0, syy = 0.0;
    for (int y = 0; y < S; y++) {
        double r = 0.0, rx = 0.0;
        for (int x = 0; x < S; x++) {
            double v = X[y * S + x];
            r += v;
            rx += v * x;
        }
        m += r;
        sy += r * y;
        syy += r * y * y;
        sx += rx;
        sxy += rx * y;
    }
    float mf = (float)m;
    if (!(mf > 0.0f))
        mf = 1.0f;
    float cy = (float)(sy / mf), cx = (float)(sx / mf);
    double s11 = sxy - cx * sy - cy * sx + (double)cx * cy * m;
    double s02 = syy - 2.0 * cy * sy + (double)cy * cy * m;
    float mu11 = (float)(s11 / mf), mu02 = (float)(s02 / mf);
    float alpha = mu11 / (mu02 > 1e-3f ? mu02 : 1e-3f);
    if (alpha != alpha) /* NaN: only from non-finite pixels */
        alpha = 0.0f;
    else if (alpha < -max_skew)
        alpha = -max_skew;
    else if (alpha > max_skew)
        alpha = max_skew;
    for (int y = 0; y < S; y++) {
        const float *row = X + y * S;
        float off = alpha * ((float)y - cy);
        for (int x = 0; x < S; x++) {
            float src = (float)x + off;
            if (!(src >= -2.0f))
                src = -2.0f;
            if (src > 31.0f)
                src = 31.0f;
            float x0 = floorf(src);
            float frac = src - x0;
            int i0 = (int)x0 + 1; /* index into the row padded by one zero each side */
            int i1 = i0 + 1;
            i0 = i0 < 0 ? 0 : (i0 > 29 ? 29 : i0);
            i1 = i1 < 0 ? 0 : (i1 > 29 ? 29 : i1);
            float v0 = (i0 >= 1 && i0 <= 28) ? row[i0 - 1] : 0.0f;
            float v1 = (i1 >= 1 && i1 <= 28) ? row[i1 - 1] : 0.0f;
            D[y * S + x] = v0 + frac * (v1 - v0);
        }
    }
}

/* atan2 of a nonzero gradient, within 2e-6 radians (a polynomial for atan on
 * [0, 1], then the octant): that moves a gradient's split between its two
 * bins by 4e-6 of a bin, far below what the features resolve, and libm's
 * atan2f took a fifth of the pass's time. */
static inline float gradient_angle(float y, float x)
{
    float ax = fabsf(x), ay = fabsf(y);
    float hi = ax > ay ? ax : ay, lo = ax > ay ? ay : ax;
    float a = lo / hi, s = a * a;
    float r = a * (0.99997726f + s * (-0.33262347f + s * (0.19354346f + s * (-0.11643287f
                   + s * (0.05265332f + s * -0.01172120f)))));
    if (ay > ax)
        r = 1.57079637f - r;
    if (x < 0.0f)
        r = 3.14159274f - r;
    return y < 0.0f ? -r : r;
}

static void hog(const float *D, float *out, const Plan *p)
{
    const int nc = p->nc, bins = p->bins;
    float pooled[S * S * MAX_BINS / 4]; /* nc * nc * bins <= 14 * 14 * 64 (cell >= 2) */
    memset(pooled, 0, sizeof(float) * nc * nc * bins);
    const float scale = (float)(bins / (2.0 * M_PI));
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float gx = (x + 1 < S ? D[y * S + x + 1] : 0.0f) - (x > 0 ? D[y * S + x - 1] : 0.0f);
            float gy = (y + 1 < S ? D[(y + 1) * S + x] : 0.0f) - (y > 0 ? D[(y - 1) * S + x] : 0.0f);
            float mag = sqrtf(gx * gx + gy * gy);
            if (!(mag > 0.0f))
                continue;
            float ang = gradient_angle(gy, gx) * scale + (float)bins;
            /* ang lies in [bins / 2, 3 * bins / 2]; only non-finite pixels (NaN, inf)
             * put it outside, and they must not index outside the histogram */
            if (!(ang >= 0.0f && ang < 2.0f * bins))
                continue;
            int b0 = (int)ang;
            float f = ang - (float)b0;
            if (b0 >= bins)
                b0 -= bins;
            int b1 = b0 + 1 == bins ? 0 : b0 + 1;
            float w1 = mag * f, w0 = mag - w1;
            for (int a = 0; a < p->ncells[y]; a++)
                for (int b = 0; b < p->ncells[x]; b++) {
                    float w = p->weights[y][a] * p->weights[x][b];
                    float *cellp = pooled + (p->cells[y][a] * nc + p->cells[x][b]) * bins;
                    cellp[b0] += w * w0;
                    cellp[b1] += w * w1;
                }
        }
    /* energy of each cell, then of each 2x2 block of the edge-padded grid */
    float e[(S + 2) * (S + 2)];
    const int ne = nc + 2;
    for (int i = 0; i < ne; i++)
        for (int j = 0; j < ne; j++) {
            int ci = i == 0 ? 0 : (i > nc ? nc - 1 : i - 1);
            int cj = j == 0 ? 0 : (j > nc ? nc - 1 : j - 1);
            const float *c = pooled + (ci * nc + cj) * bins;
            float s = 0.0f;
            for (int b = 0; b < bins; b++)
                s += c[b] * c[b];
            e[i * ne + j] = s;
        }
    float block[(S + 1) * (S + 1)];
    const int nb = nc + 1;
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < nb; j++)
            block[i * nb + j] = e[i * ne + j] + e[(i + 1) * ne + j] + e[i * ne + j + 1] + e[(i + 1) * ne + j + 1];
    for (int i = 0; i < nc; i++)
        for (int j = 0; j < nc; j++) {
            float norm = 0.25f * (block[i * nb + j] + block[(i + 1) * nb + j] + block[i * nb + j + 1]
                                  + block[(i + 1) * nb + j + 1]);
            float inv = 1.0f / sqrtf(norm + 1e-2f);
            const float *c = pooled + (i * nc + j) * bins;
            float *o = out + (i * nc + j) * bins;
            for (int b = 0; b < bins; b++) {
                float v = c[b] * inv;
                o[b] = v > 0.0f ? sqrtf(v) : 0.0f;
            }
        }
}

static void pixels(const float *D, float *out, int pool, int k)
{
    const float inv = 1.0f / (float)(pool * pool);
    for (int r = 0; r < k; r++)
        for (int c = 0; c < k; c++) {
            float acc = 0.0f;
            for (int dy = 0; dy < pool; dy++)
                for (int dx = 0; dx < pool; dx++)
                    acc += D[(r * pool + dy) * S + c * pool + dx];
            out[r * k + c] = pool == 1 ? acc : acc * inv;
        }
}

PyDoc_STRVAR(deskewed_features_doc,
"deskewed_features(images, out, n, cell, bins, pixel_pool, max_skew)\n\n"
"Fill ``out`` (n rows of (28 // cell) ** 2 * bins HOG features, then\n"
"(28 // pixel_pool) ** 2 pooled pixels when pixel_pool > 0; float32, C order)\n"
"from ``images`` (n x 28 x 28 float32, C order). Raises ValueError when a\n"
"buffer's size does not match.");

static PyObject *deskewed_features(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer in, out;
    Py_ssize_t n;
    int cell, bins, pool;
    float max_skew;
    if (!PyArg_ParseTuple(args, "y*w*niiif:deskewed_features", &in, &out, &n, &cell, &bins, &pool, &max_skew))
        return NULL;
    PyObject *res = NULL;
    Plan p;
    if (n < 0 || cell < 2 || cell > S || bins < 2 || bins > MAX_BINS || pool < 0 || pool > S) {
        PyErr_SetString(PyExc_ValueError, "invalid feature settings");
        goto done;
    }
    p.bins = bins;
    p.pool = pool;
    p.nc = S / cell;
    p.k = pool ? S / pool : 0;
    const Py_ssize_t nf = (Py_ssize_t)p.nc * p.nc * bins + (Py_ssize_t)p.k * p.k;
    if (in.len != n * S * S * (Py_ssize_t)sizeof(float) || out.len != n * nf * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "expected %zd and %zd bytes, got %zd and %zd",
                     n * S * S * (Py_ssize_t)sizeof(float), n * nf * (Py_ssize_t)sizeof(float), in.len, out.len);
        goto done;
    }
    for (int x = 0; x < S; x++) {
        p.ncells[x] = 0;
        for (int i = 0; i < p.nc; i++) {
            float w = cell_weight(i, x, cell);
            if (w > 0.0f && p.ncells[x] < 2) {
                p.cells[x][p.ncells[x]] = i;
                p.weights[x][p.ncells[x]] = w;
                p.ncells[x]++;
            }
        }
    }
    const float *X = in.buf;
    float *F = out.buf;
    Py_BEGIN_ALLOW_THREADS
    float D[S * S];
    for (Py_ssize_t i = 0; i < n; i++) {
        float *row = F + i * nf;
        deskew(X + i * S * S, D, max_skew);
        hog(D, row, &p);
        if (p.pool)
            pixels(D, row + p.nc * p.nc * bins, p.pool, p.k);
    }
    Py_END_ALLOW_THREADS
    res = Py_None;
    Py_INCREF(res);
done:
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return res;
}

static PyMethodDef methods[] = {
    {"deskewed_features", deskewed_features, METH_VARARGS, deskewed_features_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "worker._features",
    "Compiled pass of worker.features.DeskewedFeatures: deskew, HOG and pooled pixels per image.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__features(void)
{
    return PyModule_Create(&module);
}
