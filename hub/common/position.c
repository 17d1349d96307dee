/* position.c -- freeing the position request and answer (position.h). */
#include "position.h"

#include <stdlib.h>

void position_request_free(struct position_request *q)
{
    if (!q)
        return;
    free(q->ref);
    free(q);
}

void position_answer_free(struct position_answer *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        message_unref(&a->replay[i]);
    free(a->replay);
    free(a->ref);
    free(a);
}
