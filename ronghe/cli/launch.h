// The data-parallel launcher behind `ronghe train --nproc N [--rdzv HOST:PORT --nnodes K
// --node-rank R]`, in the manner of torchrun: it starts N copies of this binary with the same
// arguments, each told its place by environment variables, and watches them.
//
//   RONGHE_RANK         global rank, node_rank * nproc + local rank
//   RONGHE_LOCAL_RANK   rank on this node
//   RONGHE_LOCAL_WORLD_SIZE  workers on this node (each takes its share of the CPUs)
//   RONGHE_WORLD_SIZE   nnodes * nproc
//   RONGHE_MASTER_ADDR  where rank 0 hosts the c10d TCPStore
//   RONGHE_MASTER_PORT
//   RONGHE_DIST_TIMEOUT seconds any rank waits for a peer
//   RONGHE_LAUNCHER_PID the launcher: a worker asks for SIGTERM when it dies (PR_SET_PDEATHSIG)
//
// SIGTERM and SIGINT sent to the launcher are forwarded to every worker.
// When a worker fails, the others are left to notice (a dead peer breaks their next collective at
// once; a hung one after the timeout) so rank 0 records why in the run store; whatever is still
// running `timeout + 10` s later is sent SIGTERM. The launcher exits with the first failure's code.
#pragma once

#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::cli {

struct LaunchOptions {
  int nproc = 1;  // workers on this node
  int nnodes = 1;
  int node_rank = 0;
  std::string host;  // rank 0's address
  int port = 0;
  double timeout_s = 120;
};

// The rank this process was started as, from the environment; world == 0 when it was not.
struct WorkerEnv {
  int rank = 0, local_rank = 0, world = 0, port = 0, local_world = 1;
  std::string host;
  double timeout_s = 120;
};
Result<WorkerEnv> ReadWorkerEnv();

// Runs the workers with `args` (argv without the program) and returns the exit code to use.
int LaunchWorkers(const std::vector<std::string>& args, const LaunchOptions& options);

// "HOST:PORT" -> host, port; InvalidArgument naming the flag otherwise.
Status ParseHostPort(const std::string& s, std::string* host, int* port);

}  // namespace ronghe::cli
