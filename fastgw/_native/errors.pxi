# errors.pxi: the one place an unexpected exception inside the core goes.
#
# A bug in the gateway must cost one connection, never the worker, and must be seen. Every
# callback boundary of the two protocols, every chain step the core runs and every failure
# the core would otherwise swallow calls _internal_error: the error log ("fastgw" logger)
# gets the traceback, at most INTERNAL_LOG_PER_SECOND a second so a flood cannot fill a
# disk (the engine tick then logs how many were left out), and
# fastgw_internal_errors_total{where} counts every one. Answering the client (500
# internal_error, or closing) is ClientProtocol.fail_internal's job.

import logging as _logging

# `where` label values of fastgw_internal_errors_total, by W_* index.
INTERNAL_ERROR_WHERE = ("client", "chain", "hook", "upstream", "timer", "record")

cdef uint64_t[_N_WHERE] _internal_errors     # this worker's counts, by W_*
cdef int64_t _log_window_ns = 0               # start of the current one-second window
cdef int _logged_in_window = 0
cdef uint64_t _not_logged = 0                 # counted but not logged since the last summary
_error_log = _logging.getLogger("fastgw")


cdef void _internal_error(int where, object exc, bytes request_id) noexcept:
    """Count an unexpected exception and log it with its traceback (rate-limited)."""
    global _log_window_ns, _logged_in_window, _not_logged
    cdef int64_t now = _mono_ns()
    _internal_errors[where] += 1
    if now - _log_window_ns >= 1000000000:
        _report_not_logged()
        _log_window_ns = now
        _logged_in_window = 0
    if _logged_in_window >= INTERNAL_LOG_PER_SECOND:
        _not_logged += 1
        return
    _logged_in_window += 1
    try:
        _error_log.error(
            "internal error (%s)%s: %s: %s", INTERNAL_ERROR_WHERE[where],
            "" if request_id is None else ", request " + request_id.decode("ascii"),
            type(exc).__name__, exc, exc_info=exc)
    except BaseException:
        pass        # the error log itself failed: the counter still has it


cdef void _report_not_logged() noexcept:
    """The engine tick and a new window: say how many errors went uncounted in the log."""
    global _not_logged
    if _not_logged == 0:
        return
    try:
        _error_log.error("%d more internal errors were not logged (at most %d a second); "
                         "fastgw_internal_errors_total counts them all",
                         _not_logged, INTERNAL_LOG_PER_SECOND)
    except BaseException:
        pass
    _not_logged = 0


cdef inline void _tick_internal_errors() noexcept:
    if _not_logged and _mono_ns() - _log_window_ns >= 1000000000:
        _report_not_logged()


def internal_error_counts():
    """This worker's fastgw_internal_errors_total, {where: count} for every label."""
    return {INTERNAL_ERROR_WHERE[i]: _internal_errors[i] for i in range(_N_WHERE)}
