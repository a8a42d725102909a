// kd/interrupt.h: a request to stop (SIGINT, SIGTERM, SIGHUP) that long loops poll.
//
// The pipeline installs the handlers while it trains; the engines poll
// interrupted() at every batch boundary of their inference loops (evaluation,
// soft targets, latency), so a stop waits for one batch at most, and the
// pipeline checks it after every training step. A handler only sets a flag:
// a second signal while a checkpoint is being written changes nothing, the
// write finishes (and is atomic anyway: temporary file, fsync, rename).
#pragma once

namespace kd {

// SIGINT, SIGTERM and SIGHUP set the stop request from now on (SA_RESTART, so
// file writes in progress are not cut short by EINTR).
void install_interrupt_handlers();
// True once a stop was requested.
bool interrupted();
// The signal that asked to stop ("SIGTERM"), or "a stop request" when
// request_interrupt() did.
const char* interrupt_reason();
// Asks to stop as a signal would (the pipeline's test hook uses it).
void request_interrupt();
// Forgets a stop request (at the start of a command).
void clear_interrupt();

}  // namespace kd
