/*
 * ctx.c - TLS contexts: one SSL_CTX with the certificate, trust, version
 * and ALPN settings, the extra certificates a server picks by SNI, and a
 * client's session cache (by host:port, fed by OpenSSL's new-session
 * callback, so TLS 1.3 tickets that arrive after the handshake are kept).
 *
 * Once made (and its SNI certificates added) a context is only read, apart
 * from the locked cache, so loops on several threads may share it.
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

#define CACHE_MAX 256  /* sessions per context */
#define PER_KEY_MAX 16 /* TLS 1.3 tickets kept per host:port */
#define SESSION_ID_CTX "weft"

/* ---- loading ---------------------------------------------------------------- */

/* A PEM certificate chain from memory: the first is the leaf. */
static int use_chain_pem(SSL_CTX *sc, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return -ENOMEM;
    int rc = WEFT_ETLS_CERT;
    X509 *x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (!x || SSL_CTX_use_certificate(sc, x) != 1)
        goto out;
    SSL_CTX_clear_chain_certs(sc);
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (SSL_CTX_add0_chain_cert(sc, ca) != 1) {
            X509_free(ca);
            goto out;
        }
    }
    rc = 0;
out:
    X509_free(x);
    BIO_free(b);
    return rc;
}

static int use_key_pem(SSL_CTX *sc, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return -ENOMEM;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    int rc = k && SSL_CTX_use_PrivateKey(sc, k) == 1 ? 0 : WEFT_ETLS_CERT;
    EVP_PKEY_free(k);
    BIO_free(b);
    return rc;
}

/* Certificate chain and key, each from a file or from memory; a missing
 * key is looked for next to the certificate (one PEM holding both). */
static int load_cert(SSL_CTX *sc, const char *cert_file, const char *cert_pem, const char *key_file,
                     const char *key_pem)
{
    int rc;
    if (cert_file && cert_pem)
        return -EINVAL;
    if (key_file && key_pem)
        return -EINVAL;
    if (!key_file && !key_pem) {
        key_file = cert_file;
        key_pem = cert_pem;
    }
    if (cert_file)
        rc = SSL_CTX_use_certificate_chain_file(sc, cert_file) == 1 ? 0 : WEFT_ETLS_CERT;
    else
        rc = use_chain_pem(sc, cert_pem);
    if (rc < 0)
        return rc;
    if (key_file)
        rc = SSL_CTX_use_PrivateKey_file(sc, key_file, SSL_FILETYPE_PEM) == 1 ? 0 : WEFT_ETLS_CERT;
    else
        rc = use_key_pem(sc, key_pem);
    if (rc < 0)
        return rc;
    return SSL_CTX_check_private_key(sc) == 1 ? 0 : WEFT_ETLS_CERT;
}

/* Trusted CAs from memory: every certificate of a PEM bundle. */
static int load_ca_pem(SSL_CTX *sc, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return -ENOMEM;
    X509_STORE *st = SSL_CTX_get_cert_store(sc);
    int n = 0, rc = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (X509_STORE_add_cert(st, x) != 1)
            rc = WEFT_ETLS_CERT;
        X509_free(x);
        n++;
    }
    BIO_free(b);
    return n == 0 ? WEFT_ETLS_CERT : rc;
}

static int load_trust(SSL_CTX *sc, int role, const weft_tls_opts *o)
{
    int rc;
    if (!o || (!o->ca_file && !o->ca_dir && !o->ca_pem))
        return SSL_CTX_set_default_verify_paths(sc) == 1 ? 0 : WEFT_ETLS_CERT;
    if (o->ca_file && SSL_CTX_load_verify_file(sc, o->ca_file) != 1)
        return WEFT_ETLS_CERT;
    if (o->ca_dir && SSL_CTX_load_verify_dir(sc, o->ca_dir) != 1)
        return WEFT_ETLS_CERT;
    if (o->ca_pem && (rc = load_ca_pem(sc, o->ca_pem)) < 0)
        return rc;
    if (o->ca_file && role == WEFT_TLS_SERVER) {
        /* Servers name the acceptable CAs when they ask for a certificate. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(sc, names);
    }
    return 0;
}

/* "h2,http/1.1" -> "\x02h2\x08http/1.1".  Returns 0, -EINVAL, -ENOMEM. */
static int alpn_wire(const char *list, unsigned char **out, size_t *out_len)
{
    size_t n = strlen(list);
    unsigned char *w = weft__sys_malloc(n + 1);
    if (!w)
        return -ENOMEM;
    size_t len = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t k = end ? (size_t)(end - p) : strlen(p);
        if (k == 0 || k > 255) {
            free(w);
            return -EINVAL;
        }
        w[len++] = (unsigned char)k;
        memcpy(w + len, p, k);
        len += k;
        if (!end)
            break;
        p = end + 1;
    }
    *out = w;
    *out_len = len;
    return 0;
}

/* ---- callbacks ------------------------------------------------------------------ */

/* Servers: our first protocol the client also offers; none in common
 * goes on without ALPN rather than failing the handshake. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    weft_tls_ctx *c = arg;
    (void)ssl;
    for (size_t i = 0; i < c->alpn_len; i += 1 + c->alpn[i]) {
        const unsigned char *ours = c->alpn + i;
        for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
            if (j + 1u + in[j] > inlen)
                break;
            if (in[j] == ours[0] && memcmp(in + j + 1, ours + 1, ours[0]) == 0) {
                *out = in + j + 1;
                *outlen = in[j];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static bool cert_matches(SSL_CTX *sc, const char *name)
{
    X509 *x = SSL_CTX_get0_certificate(sc);
    return x && X509_check_host(x, name, 0, 0, NULL) == 1;
}

/* Servers: the certificate whose names cover the client's SNI; the
 * context's own one if it does or none does. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    weft_tls_ctx *c = arg;
    (void)alert;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || c->n_sni == 0 || (c->has_cert && cert_matches(c->ssl, name)))
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < c->n_sni; i++) {
        if (cert_matches(c->sni[i], name)) {
            SSL_set_SSL_CTX(ssl, c->sni[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- the client session cache ------------------------------------------------------ */

/* Entries are kept in arrival order.  A TLS 1.2 session may be resumed
 * any number of times: one per key is enough.  A TLS 1.3 ticket is used
 * once (OpenSSL will not offer a session again once it resumed with it,
 * and RFC 8446 asks clients not to): a few are kept per key, as servers
 * send more than one, and each leaves the cache when it is offered. */

static void cache_remove(weft_tls_ctx *c, size_t i)
{
    free(c->cache[i].key);
    SSL_SESSION_free(c->cache[i].sess);
    memmove(&c->cache[i], &c->cache[i + 1], (c->n_cache - i - 1) * sizeof c->cache[0]);
    c->n_cache--;
}

/* Clients: a resumable session arrived (with the handshake up to TLS 1.2,
 * as a ticket after it with TLS 1.3).  Returning 1 keeps the reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    weft__tls *t = SSL_get_app_data(ssl);
    if (!t || !t->sess_key || !SSL_SESSION_is_resumable(sess))
        return 0;
    weft_tls_ctx *c = t->ctx;
    bool tls13 = SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION;
    size_t klen = strlen(t->sess_key) + 1;
    char *key = weft__sys_malloc(klen);
    if (!key)
        return 0;
    memcpy(key, t->sess_key, klen);
    pthread_mutex_lock(&c->lock);
    /* Make room: the key's older entries beyond what it may keep, then
     * the oldest of all. */
    size_t same = 0;
    for (size_t i = c->n_cache; i-- > 0;) {
        if (strcmp(c->cache[i].key, key) == 0 && ++same >= (tls13 ? PER_KEY_MAX : 1)) {
            cache_remove(c, i);
            same--;
        }
    }
    if (c->n_cache == CACHE_MAX)
        cache_remove(c, 0);
    if (c->n_cache == c->cap_cache) {
        size_t cap = c->cap_cache ? c->cap_cache * 2 : 8;
        weft__tls_sess *p = weft__sys_realloc(c->cache, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&c->lock);
            free(key);
            return 0;
        }
        c->cache = p;
        c->cap_cache = cap;
    }
    c->cache[c->n_cache++] = (weft__tls_sess){key, sess};
    pthread_mutex_unlock(&c->lock);
    return 1;
}

SSL_SESSION *weft__tls_cache_get(weft_tls_ctx *c, const char *key)
{
    SSL_SESSION *s = NULL;
    pthread_mutex_lock(&c->lock);
    /* The newest first: it lives longest. */
    for (size_t i = c->n_cache; i-- > 0 && !s;) {
        if (strcmp(c->cache[i].key, key) != 0)
            continue;
        SSL_SESSION *e = c->cache[i].sess;
        if (!SSL_SESSION_is_resumable(e)) {
            cache_remove(c, i);
            continue;
        }
        s = e;
        SSL_SESSION_up_ref(s);
        if (SSL_SESSION_get_protocol_version(e) >= TLS1_3_VERSION)
            cache_remove(c, i); /* single use */
    }
    pthread_mutex_unlock(&c->lock);
    return s;
}

void weft__tls_cache_drop(weft_tls_ctx *c, const char *key)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = c->n_cache; i-- > 0;)
        if (strcmp(c->cache[i].key, key) == 0)
            cache_remove(c, i);
    pthread_mutex_unlock(&c->lock);
}

/* ---- contexts --------------------------------------------------------------------- */

static int version_of(int v, int dflt)
{
    if (v == 0)
        return dflt;
    return v == TLS1_2_VERSION || v == TLS1_3_VERSION ? v : -1;
}

/* The settings every SSL_CTX of c shares (its own and the SNI ones). */
static int configure(weft_tls_ctx *c, SSL_CTX *sc)
{
    if (SSL_CTX_set_min_proto_version(sc, c->min_version) != 1 ||
        SSL_CTX_set_max_proto_version(sc, c->max_version) != 1)
        return -EINVAL;
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
    /* Partial writes: each SSL_write makes at most one record's worth,
     * so the BIO never keeps more than that.  Released buffers: an idle
     * connection holds no record buffers. */
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
    /* Read whole records (and what follows) in one receive. */
    SSL_CTX_set_read_ahead(sc, 1);
    if (c->role == WEFT_TLS_CLIENT) {
        SSL_CTX_set_verify(sc, c->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(sc,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(sc, on_new_session);
        if (c->alpn && SSL_CTX_set_alpn_protos(sc, c->alpn, (unsigned)c->alpn_len) != 0)
            return -ENOMEM;
    } else {
        SSL_CTX_set_verify(
            sc, c->verify ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE,
            NULL);
        SSL_CTX_set_options(sc, SSL_OP_CIPHER_SERVER_PREFERENCE);
        SSL_CTX_set_session_id_context(sc, (const unsigned char *)SESSION_ID_CTX,
                                       sizeof SESSION_ID_CTX - 1);
        if (c->alpn)
            SSL_CTX_set_alpn_select_cb(sc, on_alpn, c);
    }
    return 0;
}

void weft_tls_ctx_free(weft_tls_ctx *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_sni; i++)
        SSL_CTX_free(c->sni[i]);
    free(c->sni);
    for (size_t i = 0; i < c->n_cache; i++) {
        free(c->cache[i].key);
        SSL_SESSION_free(c->cache[i].sess);
    }
    free(c->cache);
    SSL_CTX_free(c->ssl);
    free(c->alpn);
    pthread_mutex_destroy(&c->lock);
    free(c);
    ERR_clear_error();
}

int weft_tls_ctx_new(weft_tls_ctx **out, int role, const weft_tls_opts *o)
{
    if (!out || (role != WEFT_TLS_CLIENT && role != WEFT_TLS_SERVER))
        return -EINVAL;
    int min = version_of(o ? o->min_version : 0, TLS1_2_VERSION);
    int max = version_of(o ? o->max_version : 0, TLS1_3_VERSION);
    if (min < 0 || max < 0 || max < min)
        return -EINVAL;
    bool have_cert = o && (o->cert_file || o->cert_pem);
    if (o && !have_cert && (o->key_file || o->key_pem))
        return -EINVAL;
    weft_tls_ctx *c = weft__sys_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    c->role = role;
    c->min_version = min;
    c->max_version = max;
    c->verify = role == WEFT_TLS_CLIENT ? !(o && o->no_verify) : (o && o->verify_peer);
    int rc = -ENOMEM;
    ERR_clear_error();
    if (o && o->alpn && (rc = alpn_wire(o->alpn, &c->alpn, &c->alpn_len)) < 0)
        goto fail;
    c->ssl = SSL_CTX_new(role == WEFT_TLS_CLIENT ? TLS_client_method() : TLS_server_method());
    if (!c->ssl) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = configure(c, c->ssl)) < 0)
        goto fail;
    if (role == WEFT_TLS_SERVER) {
        SSL_CTX_set_tlsext_servername_callback(c->ssl, on_servername);
        SSL_CTX_set_tlsext_servername_arg(c->ssl, c);
    }
    if (have_cert) {
        if ((rc = load_cert(c->ssl, o->cert_file, o->cert_pem, o->key_file, o->key_pem)) < 0)
            goto fail;
        c->has_cert = true;
    }
    /* Trust: what verifies the peer.  A context that never verifies
     * loads only what it was given (for weft_tls_verify_result). */
    if (c->verify || (o && (o->ca_file || o->ca_dir || o->ca_pem))) {
        if ((rc = load_trust(c->ssl, role, o)) < 0)
            goto fail;
    }
    ERR_clear_error();
    *out = c;
    return 0;
fail:
    weft__tls_note_queue(rc);
    weft_tls_ctx_free(c);
    return rc;
}

int weft_tls_ctx_add_cert(weft_tls_ctx *c, const char *cert_file, const char *key_file)
{
    if (!c || c->role != WEFT_TLS_SERVER || !cert_file)
        return -EINVAL;
    int rc;
    ERR_clear_error();
    if (!c->has_cert) {
        /* The first certificate of a context made without one becomes
         * the default, for clients whose SNI matches nothing.  Tried on a
         * scratch context first: a key that fails after the certificate
         * loaded would leave c with a certificate and no key. */
        SSL_CTX *scratch = SSL_CTX_new(TLS_server_method());
        if (!scratch) {
            rc = -ENOMEM;
            goto out;
        }
        rc = load_cert(scratch, cert_file, NULL, key_file, NULL);
        SSL_CTX_free(scratch);
        if (rc < 0 || (rc = load_cert(c->ssl, cert_file, NULL, key_file, NULL)) < 0)
            goto out;
        c->has_cert = true;
        goto out;
    }
    SSL_CTX **v = weft__sys_realloc(c->sni, (c->n_sni + 1) * sizeof *v);
    if (!v) {
        rc = -ENOMEM;
        goto out;
    }
    c->sni = v;
    SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
    if (!sc) {
        rc = -ENOMEM;
        goto out;
    }
    /* The same settings and trust; session tickets stay with the
     * context's own SSL_CTX, which OpenSSL keeps as the session one. */
    if ((rc = configure(c, sc)) < 0 || (rc = load_cert(sc, cert_file, NULL, key_file, NULL)) < 0) {
        SSL_CTX_free(sc);
        goto out;
    }
    SSL_CTX_set1_cert_store(sc, SSL_CTX_get_cert_store(c->ssl));
    STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(c->ssl);
    if (names)
        SSL_CTX_set_client_CA_list(sc, SSL_dup_CA_list(names));
    c->sni[c->n_sni++] = sc;
    rc = 0;
out:
    if (rc < 0)
        weft__tls_note_queue(rc);
    ERR_clear_error();
    return rc;
}
