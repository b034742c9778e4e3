/* ronghe-edge's C API: load an edge artifact (.rhe, written by `ronghe export --edge`) and run
 * forecasts and classifications in process, without LibTorch.
 *
 *   char err[256];
 *   ronghe_edge_model* m = ronghe_edge_open("load.rhe", err, sizeof err);
 *   if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *   float out[1];
 *   if (ronghe_edge_predict(m, history, ronghe_edge_input_size(m), out, 1, err, sizeof err) != 0)
 *     ...
 *   ronghe_edge_close(m);
 *
 * Inputs are raw values, steps x features row-major (oldest first); regression outputs are in the
 * original units, classifiers return logits. A model may be used from many threads at once.
 * Functions that fail return non-zero (or NULL) and write a one-line reason into err. */
#ifndef RONGHE_EDGE_H_
#define RONGHE_EDGE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ronghe_edge_model ronghe_edge_model;

ronghe_edge_model* ronghe_edge_open(const char* path, char* err, size_t err_len);
ronghe_edge_model* ronghe_edge_open_bytes(const void* data, size_t len, char* err, size_t err_len);
void ronghe_edge_close(ronghe_edge_model* model);

int64_t ronghe_edge_steps(const ronghe_edge_model* model);    /* 1 for table models */
int64_t ronghe_edge_features(const ronghe_edge_model* model); /* per step */
int64_t ronghe_edge_input_size(const ronghe_edge_model* model);
int64_t ronghe_edge_output_size(const ronghe_edge_model* model);
/* "mlp", "lstm" or "gru"; "fp32" or "int8"; the header's model version ("" if none). */
const char* ronghe_edge_kind(const ronghe_edge_model* model);
const char* ronghe_edge_precision(const ronghe_edge_model* model);
const char* ronghe_edge_model_version(const ronghe_edge_model* model);

int ronghe_edge_predict(const ronghe_edge_model* model, const float* input, size_t input_len,
                        float* output, size_t output_len, char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* RONGHE_EDGE_H_ */
