/*
 * err.c - what a failed SSL call means, in weft's codes.
 *
 * OpenSSL reports through a per-thread error queue, and every coroutine of
 * a loop shares its thread: a reason left on the queue across a switch
 * would be read by whichever coroutine looks next.  So each SSL call
 * starts with an empty queue (weft__tls_prep), and its failure is read,
 * turned into a code and a reason string kept in the connection, and the
 * queue emptied again before anything can switch.
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <string.h>

/* The reason of the calling thread's last TLS failure, for failures that
 * leave no TLS socket to ask (a failed connect, accept or wrap). */
static __thread char last_msg[160];
static __thread bool have_last;

void weft__tls_prep(weft__tls *t)
{
    ERR_clear_error();
    t->sys_err = 0;
    t->rd_again = false;
}

static void set_msg(weft__tls *t, const char *msg)
{
    snprintf(t->errmsg, sizeof t->errmsg, "%s", msg);
    snprintf(last_msg, sizeof last_msg, "%s", msg);
    have_last = true;
}

void weft__tls_note(weft__tls *t, int code)
{
    set_msg(t, weft_strerror(code));
}

void weft__tls_note_queue(int code)
{
    unsigned long e = ERR_peek_error(); /* the first: the root cause */
    const char *r = !e                    ? NULL
                    : ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e)) /* fopen's errno */
                                          : ERR_reason_error_string(e);
    snprintf(last_msg, sizeof last_msg, "%s", r ? r : weft_strerror(code));
    have_last = true;
    ERR_clear_error();
}

/* A failed chain or name check, by its X.509 result. */
static int verify_code(long v)
{
    switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: return WEFT_ETLS_EXPIRED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH: return WEFT_ETLS_NAME;
    default:
        /* Unknown issuer, self-signed, bad signature, wrong purpose...:
         * in every case the chain cannot be trusted. */
        return WEFT_ETLS_UNTRUSTED;
    }
}

/* Reasons that mean the bytes on the wire were not TLS, or not sane TLS. */
static bool garbage(int reason)
{
    switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_DATA_LENGTH_TOO_LONG:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_BAD_PACKET_LENGTH:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_LENGTH_TOO_SHORT:
    case SSL_R_BAD_LENGTH:
    case SSL_R_BAD_HANDSHAKE_LENGTH:
    case SSL_R_EXCESSIVE_MESSAGE_SIZE:
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_DECRYPTION_FAILED:
    case SSL_R_BAD_RECORD_TYPE:
    case SSL_R_RECORD_TOO_SMALL:
    case SSL_R_NOT_ON_RECORD_BOUNDARY:
    case SSL_R_BAD_PROTOCOL_VERSION_NUMBER:
    case SSL_R_BAD_LEGACY_VERSION:
    case SSL_R_INVALID_CCS_MESSAGE:
    case SSL_R_CCS_RECEIVED_EARLY:
    case SSL_R_UNEXPECTED_CCS_MESSAGE: return true;
    default: return false;
    }
}

/* The code for an SSL_ERROR_SSL failure whose first queued error is e. */
static int ssl_code(weft__tls *t, unsigned long e, bool handshake)
{
    char buf[160];
    int reason = ERR_GET_REASON(e);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
        if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
            long v = SSL_get_verify_result(t->ssl);
            if (v != X509_V_OK) {
                snprintf(buf, sizeof buf, "certificate verify failed: %s",
                         X509_verify_cert_error_string(v));
                set_msg(t, buf);
                return verify_code(v);
            }
        }
        const char *r = ERR_reason_error_string(e);
        set_msg(t, r ? r : "TLS error");
        if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
            return WEFT_ETLS_ALERT;
        if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return WEFT_ETLS_TRUNCATED;
        if (reason == SSL_R_PROTOCOL_IS_SHUTDOWN)
            return -EPIPE;
        if (garbage(reason))
            return WEFT_ETLS_PROTOCOL;
        return handshake ? WEFT_ETLS_HANDSHAKE : WEFT_ETLS_PROTOCOL;
    }
    const char *r = ERR_reason_error_string(e);
    set_msg(t, r ? r : "TLS error");
    if (ERR_GET_LIB(e) == ERR_LIB_SYS && reason > 0)
        return -reason;
    if (reason == ERR_R_MALLOC_FAILURE)
        return -ENOMEM;
    return handshake ? WEFT_ETLS_HANDSHAKE : WEFT_ETLS_PROTOCOL;
}

int weft__tls_error(weft__tls *t, int ssl_err, bool handshake)
{
    int rc;
    unsigned long e = ERR_peek_error();
    if (t->sys_err) {
        /* The socket failed under OpenSSL: that is the news. */
        rc = -t->sys_err;
        set_msg(t, weft_strerror(rc));
    } else if (e != 0 && ssl_err != SSL_ERROR_ZERO_RETURN) {
        rc = ssl_code(t, e, handshake);
    } else if (t->eof) {
        rc = WEFT_ETLS_TRUNCATED;
        set_msg(t, "unexpected eof while reading");
    } else {
        rc = handshake ? WEFT_ETLS_HANDSHAKE : WEFT_ETLS_PROTOCOL;
        set_msg(t, ssl_err == SSL_ERROR_SYSCALL ? "TLS I/O failed" : "TLS error");
    }
    ERR_clear_error();
    return rc;
}

const char *weft_tls_errmsg(const weft_sock *h)
{
    weft__sock *s;
    if (h && weft__sock_enter(h, &s) == 0 && s->ops == &weft__tls_ops) {
        const weft__tls *t = s->layer;
        return t->errmsg[0] ? t->errmsg : NULL;
    }
    return have_last ? last_msg : NULL;
}
