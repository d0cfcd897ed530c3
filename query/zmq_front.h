/*
 * zmq_front.h - the query node's ZeroMQ front: the requests of the HTTP API
 * (query/service.h) as msgpack maps on a ROUTER socket, for generation
 * clusters.  docs/zmq.md is the user's guide, with a client example.
 *
 * Frames as the ROUTER sees them:
 *
 *   client   frames                         reply frames
 *   DEALER   [identity] request             [identity] reply
 *   REQ      [identity] "" request          [identity] "" reply
 *   (proxy)  [identity] route... "" request [identity] route... "" reply
 *
 * The envelope is every frame up to the first empty frame that has a frame
 * after it (or just the identity when there is none); it goes back as it
 * came.  More than ZMQ_FRONT_MAX_FRAMES frames is a malformed envelope: the
 * message is dropped with a logged warning.  A frame over
 * ZMQ_FRONT_MAX_FRAME makes ZeroMQ drop the sender's connection.
 *
 * Request: one frame, a msgpack map (at most COMPOSE_REQUEST_MAX_BODY,
 * 64 KiB, and its JSON form too):
 *
 *   key     msgpack type                    meaning
 *   op      str "compose" | "retrieve"      which request; absent or nil: "compose";
 *           | "adapter"                       "adapter": one adapter's StylusDoc
 *   adapter str                             with op "adapter": the adapter id
 *   id      nil, bool, int, float or str    echoed in the reply, to match replies
 *   ...     as query/request.h              prompt, base_model, n_images, k,
 *                                             allow_nsfw, allow_characters, format
 *
 * Reply: one frame, a msgpack map (proto/msgpack_json.h gives the types):
 *
 *   key     msgpack type    meaning
 *   status  int             as the HTTP status: 200, or service.h's errors
 *   id      as sent         only when the request had one (and it was a scalar)
 *   ...                     the answer's keys (adapters, forms, partial, coverage
 *                             ...; or candidates), or error {code, message}
 *
 * Refusals before the service: 413 for a request over 64 KiB, 400 for
 * bytes that are not one msgpack value, a value that is not a map, bin or
 * ext values, non-str keys, nesting deeper than 32, an id that is not a
 * scalar, an unknown op, or more than one frame after the envelope.  They
 * count as errors in the service's metrics.  Requests run on worker
 * threads, one per lane of the service (stylus serve --lanes), each taking
 * the oldest waiting request when it is free: a DEALER may send many before
 * reading the replies, and they may come back in another order (match them
 * by id).  Over ZMQ_FRONT_MAX_PENDING waiting, a request gets 503 at once.
 *
 * Security (proto/security.h): CURVE server when sec holds a keypair (an
 * allow list is then required); plaintext only on loopback and only with
 * --insecure (STYLUS_INSECURE=1); anything else is refused at start.
 *
 * Thread rules: zmq_front_start() starts a front thread (the only user of
 * the ROUTER) and one worker thread per lane, with their own ZeroMQ context
 * (and, with CURVE, the context's ZAP handler); the workers call
 * service_handle(), which is thread-safe.  Start and stop from one thread.
 */
#ifndef STYLUS_QUERY_ZMQ_FRONT_H
#define STYLUS_QUERY_ZMQ_FRONT_H

#include "proto/errors.h"
#include "proto/security.h"
#include "query/service.h"

#define ZMQ_FRONT_MAX_FRAMES  16          /* frames of one message, envelope included */
#define ZMQ_FRONT_MAX_FRAME   (1 << 20)   /* bytes of one frame (ZMQ_MAXMSGSIZE) */
#define ZMQ_FRONT_MAX_REPLY   (16u << 20) /* bytes of one reply */
#define ZMQ_FRONT_MAX_PENDING 1024        /* requests waiting for a worker; more get 503 */

struct zmq_front;

/*
 * Bind a ROUTER to endpoint (e.g. tcp://127.0.0.1:5700) and answer requests
 * on a thread of its own.  svc is borrowed until zmq_front_stop(); sec is
 * copied.  Errors, with the reason in err: ST_EINVAL (the security rules
 * refuse the endpoint, or CURVE is missing its allow list), ST_EIO (the bind
 * failed: a malformed endpoint, a port taken ...), ST_ENOMEM.  *out is NULL
 * on error.
 */
int zmq_front_start(struct service *svc, const char *endpoint, const struct security *sec,
                    struct zmq_front **out, struct st_error *err);

/* Stop the thread (after the request it is running, if any), close everything, NULL *f. */
void zmq_front_stop(struct zmq_front **f);

#endif
