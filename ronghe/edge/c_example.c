/* The C API from C: ./edge_c_example MODEL.rhe V1 V2 ... prints the outputs, one per line, or the
 * error and exit status 1. edge_test runs it against the C++ runtime's answers. */
#include <stdio.h>
#include <stdlib.h>

#include "ronghe/edge/ronghe_edge.h"

int main(int argc, char** argv) {
  char err[512];
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.rhe VALUES...\n", argv[0]);
    return 2;
  }
  ronghe_edge_model* m = ronghe_edge_open(argv[1], err, sizeof err);
  if (m == NULL) {
    fprintf(stderr, "error: %s\n", err);
    return 1;
  }
  size_t n = (size_t)(argc - 2);
  float* in = malloc((n ? n : 1) * sizeof *in);
  int64_t k = ronghe_edge_output_size(m);
  float* out = malloc((size_t)k * sizeof *out);
  for (size_t i = 0; i < n; ++i) in[i] = strtof(argv[i + 2], NULL);
  int rc = ronghe_edge_predict(m, in, n, out, (size_t)k, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "error: %s\n", err);
  } else {
    printf("%s %s %s\n", ronghe_edge_kind(m), ronghe_edge_precision(m),
           ronghe_edge_model_version(m));
    for (int64_t j = 0; j < k; ++j) printf("%.9g\n", out[j]);
  }
  free(in);
  free(out);
  ronghe_edge_close(m);
  return rc == 0 ? 0 : 1;
}
