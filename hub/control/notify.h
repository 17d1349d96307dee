/* notify.h -- telling systemd how the hub is doing (sd_notify): READY=1, STOPPING=1, STATUS=,
 * and the watchdog. Each call is a no-op when the hub was not started by systemd. */
#ifndef HERALD_NOTIFY_H
#define HERALD_NOTIFY_H

#include <stdint.h>

void notify_ready(const char *status);
void notify_stopping(const char *status);
void notify_status(const char *status);
void notify_watchdog(void);
/* The watchdog interval systemd asked for (WatchdogSec), in microseconds; 0: none. */
uint64_t notify_watchdog_usec(void);

#endif
