/* clock.h - the one clock every timing in pslora reads: monotonic seconds
 * (step times, progress lines, timeouts, benchmarks). */
#ifndef PSLORA_CLOCK_H
#define PSLORA_CLOCK_H

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double clock_now(void);

#endif
