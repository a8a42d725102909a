// Must not compile: kd_train (the phase runner, resume, model files) sits
// below kd_io, so the report is out of its reach. CTest's
// layering.train_cannot_include_io compiles this file with kd_train's include
// path and passes only when the compiler cannot find the header.
#include "kd/phase.h"
#include "kd/report.h"
