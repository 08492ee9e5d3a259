/* SPDX-License-Identifier: MIT */
/* Intrusive lists, kernel style: a circular doubly linked list (coho_list_t) and a singly
 * linked FIFO queue (coho_slist_t). The lists never allocate or free: an element embeds the
 * node and stays owned by whoever allocated it. All operations are O(1), header-only (nothing
 * here is a library symbol), and not thread-safe: a list belongs to whoever owns its head.
 *
 * Public because code above libcoho (libcoho_net, user code) keeps its wait lists and
 * connection lists the same way libcoho does; libcoho's own layers include it through
 * base_struct/list.h. */
#ifndef COHO_LIST_H
#define COHO_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* ---- doubly linked, circular, with a sentinel head ---- */
typedef struct coho_list {
    struct coho_list *next;
    struct coho_list *prev;
} coho_list_t;

#define coho_container_of(ptr, type, member) ((type *)((char *)(ptr) - (offsetof(type, member))))

/* Makes `node` an empty list (or a self-linked, unlinked element). */
static inline void coho_list_init(coho_list_t *node)
{
    node->next = node;
    node->prev = node;
}

static inline bool coho_list_is_empty(const coho_list_t *head)
{
    return head->next == head;
}

/* True when an element initialised with coho_list_init is currently in a list. */
static inline bool coho_list_is_linked(const coho_list_t *node)
{
    return node->next != node;
}

static inline void coho_list_insert_between(coho_list_t *node, coho_list_t *prev, coho_list_t *next)
{
    node->prev = prev;
    node->next = next;
    prev->next = node;
    next->prev = node;
}

/* Inserts `node` at the front of `head`. */
static inline void coho_list_push_front(coho_list_t *head, coho_list_t *node)
{
    coho_list_insert_between(node, head, head->next);
}

/* Inserts `node` at the back of `head`. */
static inline void coho_list_push_back(coho_list_t *head, coho_list_t *node)
{
    coho_list_insert_between(node, head->prev, head);
}

/* Unlinks `node` and leaves it self-linked, so a second unlink is harmless. */
static inline void coho_list_del(coho_list_t *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    coho_list_init(node);
}

/* Returns the first element of `head` (unlinked), or NULL when it is empty. */
static inline coho_list_t *coho_list_pop_front(coho_list_t *head)
{
    coho_list_t *n = head->next;

    if (n == head)
        return NULL;
    coho_list_del(n);
    return n;
}

/* Moves every element of `from` to the back of `to`; `from` becomes empty. */
static inline void coho_list_splice_back(coho_list_t *to, coho_list_t *from)
{
    if (coho_list_is_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    coho_list_init(from);
}

#define coho_list_first(head)              ((head)->next)
#define coho_list_entry(ptr, type, member) coho_container_of(ptr, type, member)

/* Iterates over nodes; `pos` must not be unlinked inside the loop (use the _safe form). */
#define coho_list_for_each(pos, head) \
    for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* Iterates over nodes; `pos` may be unlinked inside the loop. */
#define coho_list_for_each_safe(pos, tmp, head)                      \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
         (pos) = (tmp), (tmp) = (pos)->next)

/* ---- singly linked FIFO queue ---- */
typedef struct coho_snode {
    struct coho_snode *next;
} coho_snode_t;

typedef struct coho_slist {
    coho_snode_t *head;
    coho_snode_t *tail; /* meaningful only when head != NULL */
} coho_slist_t;

static inline void coho_slist_init(coho_slist_t *q)
{
    q->head = NULL;
    q->tail = NULL;
}

static inline bool coho_slist_is_empty(const coho_slist_t *q)
{
    return q->head == NULL;
}

static inline void coho_slist_push_back(coho_slist_t *q, coho_snode_t *n)
{
    n->next = NULL;
    if (q->head == NULL)
        q->head = n;
    else
        q->tail->next = n;
    q->tail = n;
}

static inline void coho_slist_push_front(coho_slist_t *q, coho_snode_t *n)
{
    n->next = q->head;
    if (q->head == NULL)
        q->tail = n;
    q->head = n;
}

/* Returns the first node, or NULL when the queue is empty. */
static inline coho_snode_t *coho_slist_pop_front(coho_slist_t *q)
{
    coho_snode_t *n = q->head;

    if (n != NULL) {
        q->head = n->next;
        n->next = NULL;
    }
    return n;
}

#endif /* COHO_LIST_H */
