/* channel_name.c -- channel name rules, shared by the API, the broker's wire format and the
 * delivery planes. */
#include "channel_name.h"

static inline bool name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':';
}

bool channel_name_is_valid(const char *name, size_t len)
{
    size_t i = 0;

    if (len < 1 || len > CHANNEL_NAME_MAX)
        return false;
    if (name[0] == '$') {
        if (len == 1)
            return false;
        i = 1;
    }
    for (; i < len; i++)
        if (!name_char_ok((unsigned char)name[i]))
            return false;
    return true;
}

bool channel_name_is_reserved(const char *name, size_t len)
{
    return len > 0 && name[0] == '$';
}
