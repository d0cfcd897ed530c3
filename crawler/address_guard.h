/*
 * address_guard.h - refuse to open connections to private, loopback and
 * link-local addresses, for URLs that came from fetched content (image and
 * file URLs of a Civitai or Hugging Face listing) rather than from the
 * operator.  A hostile listing could otherwise point the crawler or the
 * refiner at 127.0.0.1, the LAN or a cloud metadata service (169.254.169.254).
 *
 * Usage with any libcurl easy handle:
 *
 *	struct address_guard g = {0};
 *
 *	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, address_guard_open_socket);
 *	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &g);
 *	... the transfer fails with CURLE_COULDNT_CONNECT; g.refused says why ...
 *
 * The check runs on the resolved address, in the callback libcurl calls to
 * open each socket, so it holds for every redirect hop and every address a
 * name resolves to (DNS tricks included): nothing reaches a refused address,
 * not even a SYN.  It does not run when libcurl reuses a connection that is
 * already open; such a connection was opened either under the same check or
 * by a request the caller trusts (an operator-configured API origin).  With
 * a proxy, the address checked is the proxy's.
 *
 * Refused: IPv4 0/8, 10/8, 127/8, 169.254/16, 172.16/12, 192.168/16; IPv6
 * ::, ::1, fc00::/7, fe80::/10, and IPv4-mapped ::ffff:a.b.c.d by the IPv4 rule.
 *
 * Thread rules: pure functions; a guard belongs to its transfer.
 */
#ifndef STYLUS_CRAWLER_ADDRESS_GUARD_H
#define STYLUS_CRAWLER_ADDRESS_GUARD_H

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <sys/socket.h>

/* What the guard of one transfer saw; zero it before the transfer. */
struct address_guard {
        bool refused;                   /* a socket to a non-public address was refused */
        char address[INET6_ADDRSTRLEN]; /* the last refused address, for the error message */
};

/* Is sa (AF_INET or AF_INET6) a public address?  Any other family is not. */
bool address_guard_is_public(const struct sockaddr *sa);

/*
 * A CURLOPT_OPENSOCKETFUNCTION: open the socket libcurl asks for when the
 * address is public, else record it in the struct address_guard passed as
 * CURLOPT_OPENSOCKETDATA and return CURL_SOCKET_BAD (libcurl then tries the
 * name's next address, and fails with CURLE_COULDNT_CONNECT when none is left).
 */
curl_socket_t address_guard_open_socket(void *guard, curlsocktype purpose,
                                        struct curl_sockaddr *address);

#endif
