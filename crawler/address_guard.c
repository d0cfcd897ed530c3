/*
 * address_guard.c - the public-address rule of address_guard.h.
 */
#include "crawler/address_guard.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static bool ipv4_is_public(uint32_t a)
{
        return !((a >> 24) == 0 ||                   /* 0.0.0.0/8, "this network" */
                 (a >> 24) == 10 ||                  /* 10/8 */
                 (a >> 24) == 127 ||                 /* loopback */
                 (a >> 16) == ((169u << 8) | 254) || /* link-local, cloud metadata */
                 (a >> 20) == ((172u << 4) | 1) ||   /* 172.16/12 */
                 (a >> 16) == ((192u << 8) | 168));  /* 192.168/16 */
}

static bool ipv6_is_public(const unsigned char b[16])
{
        static const unsigned char zero[16], mapped[12] = {[10] = 0xff, [11] = 0xff};

        if (memcmp(b, mapped, 12) == 0)
                return ipv4_is_public((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                                      (uint32_t)b[14] << 8 | b[15]);
        if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) /* :: and ::1 */
                return false;
        if ((b[0] & 0xfe) == 0xfc) /* fc00::/7, unique local */
                return false;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10, link-local */
                return false;
        return true;
}

bool address_guard_is_public(const struct sockaddr *sa)
{
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

                return ipv4_is_public(ntohl(in->sin_addr.s_addr));
        }
        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

                return ipv6_is_public(in6->sin6_addr.s6_addr);
        }
        return false;
}

static void remember(struct address_guard *g, const struct sockaddr *sa)
{
        const void *bytes = NULL;

        g->refused = true;
        snprintf(g->address, sizeof(g->address), "?");
        if (sa->sa_family == AF_INET)
                bytes = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        else if (sa->sa_family == AF_INET6)
                bytes = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (bytes)
                inet_ntop(sa->sa_family, bytes, g->address, sizeof(g->address));
}

curl_socket_t address_guard_open_socket(void *guard, curlsocktype purpose,
                                        struct curl_sockaddr *address)
{
        (void)purpose;
        if (!address_guard_is_public(&address->addr)) {
                remember(guard, &address->addr);
                return CURL_SOCKET_BAD;
        }
        return socket(address->family, address->socktype, address->protocol);
}
