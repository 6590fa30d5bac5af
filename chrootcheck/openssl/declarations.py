"""The libcrypto declarations chrootcheck uses, grouped by the header that declares them.

cffi ABI mode: nothing is compiled. The package's build turns ``DECLARATIONS`` into
``_libcrypto_cffi.py`` (``build_cffi.py``, cffi's ``set_source(name, None)``), which imports
without parsing C; ``cdefs.py`` holds the one ``ffi``. This module imports nothing, so the
build can read it without cffi's runtime or the rest of the package.

A symbol a library lacks fails only when first used, so ``library.py`` probes the optional
ones once at load (the capability table). Versions in brackets say where a symbol exists; the
rest are in every supported version (1.0.2 to 3.x).

Opaque OpenSSL types are declared as incomplete structs: we only pass their pointers around.
"""

from __future__ import annotations

import zlib

# --- openssl/crypto.h -------------------------------------------------------------------
CRYPTO_H = """
/* [1.1.0+] 1.0.2 has SSLeay()/SSLeay_version() instead (same meaning). */
unsigned long OpenSSL_version_num(void);
const char *OpenSSL_version(int type);
unsigned long SSLeay(void);
const char *SSLeay_version(int type);

/* [1.1.0+] settings is an OPENSSL_INIT_SETTINGS *; we always pass NULL, so void * will do. */
int OPENSSL_init_crypto(uint64_t opts, const void *settings);

/* [3.0+] build-time facts: seed source, OPENSSLDIR, MODULESDIR ... (see INFO_* below). */
const char *OPENSSL_info(int type);
"""

# --- openssl/err.h ----------------------------------------------------------------------
ERR_H = """
unsigned long ERR_get_error(void);
unsigned long ERR_peek_error(void);
void ERR_clear_error(void);

/* 1.x way to read file/line/data; deprecated but exported in 3.x. */
unsigned long ERR_get_error_line_data(const char **file, int *line,
                                      const char **data, int *flags);
/* [3.0+] adds the C function name recorded by ERR_raise. */
unsigned long ERR_get_error_all(const char **file, int *line, const char **func,
                                const char **data, int *flags);

const char *ERR_lib_error_string(unsigned long e);
/* Returns NULL on 3.x, which has no function codes. */
const char *ERR_func_error_string(unsigned long e);
const char *ERR_reason_error_string(unsigned long e);

/* [1.0.2 only as a function]; a macro over OPENSSL_init_crypto from 1.1.0 on. */
void ERR_load_crypto_strings(void);

/* The library's own printer, used by the tests to check our formatting against it. */
void ERR_print_errors_cb(int (*cb)(const char *str, size_t len, void *u), void *u);

/* Raising errors, for tests: ERR_put_error in 1.x; a macro in 3.x, whose ERR_raise
   expands to ERR_new + ERR_set_debug + ERR_set_error (variadic: printf-style data). */
void ERR_put_error(int lib, int func, int reason, const char *file, int line);
void ERR_new(void);
void ERR_set_debug(const char *file, int line, const char *func);
void ERR_set_error(int lib, int reason, const char *fmt, ...);
"""

# --- openssl/rand.h ---------------------------------------------------------------------
RAND_H = """
int RAND_bytes(unsigned char *buf, int num);
int RAND_status(void);
int RAND_poll(void);
void RAND_seed(const void *buf, int num);
void RAND_add(const void *buf, int num, double randomness);
/* [1.1.1+] from the per-thread private DRBG (keys), as a TLS handshake draws them. */
int RAND_priv_bytes(unsigned char *buf, int num);

/* [1.1.1+] default 1 (keep); 0 closes the cached device fds now and after every read. */
void RAND_keep_random_devices_open(int keep);

/* [3.0+] the three DRBGs of a library context; NULL = the default context. public and
   private are per thread. They return NULL when the DRBG cannot be created (no entropy). */
typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
typedef struct evp_rand_ctx_st EVP_RAND_CTX;
EVP_RAND_CTX *RAND_get0_primary(OSSL_LIB_CTX *ctx);
EVP_RAND_CTX *RAND_get0_public(OSSL_LIB_CTX *ctx);
EVP_RAND_CTX *RAND_get0_private(OSSL_LIB_CTX *ctx);

/* A RAND engine (1.x) or a replaced method takes the DRBG out of the picture. */
typedef struct rand_meth_st RAND_METHOD;
const RAND_METHOD *RAND_get_rand_method(void);
const RAND_METHOD *RAND_OpenSSL(void);
const RAND_METHOD *RAND_SSLeay(void);  /* 1.0.2's name for RAND_OpenSSL */
"""

# --- openssl/rand_drbg.h (1.1.1 only; removed in 3.0) -----------------------------------
RAND_DRBG_H = """
typedef struct rand_drbg_st RAND_DRBG;
/* "master" is 1.1.1's name for what 3.x calls the primary DRBG. */
RAND_DRBG *RAND_DRBG_get0_master(void);
RAND_DRBG *RAND_DRBG_get0_public(void);
RAND_DRBG *RAND_DRBG_get0_private(void);
/* prediction_resistance must be 0: 1.1.1 refuses 1 with any seed source. */
int RAND_DRBG_reseed(RAND_DRBG *drbg, const unsigned char *adin, size_t adinlen,
                     int prediction_resistance);
int RAND_DRBG_set_reseed_interval(RAND_DRBG *drbg, unsigned int interval);
/* time_t is not a cffi built-in type; it is a long on every Linux ABI we run on. */
int RAND_DRBG_set_reseed_time_interval(RAND_DRBG *drbg, long interval);
int RAND_DRBG_bytes(RAND_DRBG *drbg, unsigned char *out, size_t outlen);
"""

# --- openssl/core.h (OSSL_PARAM, 3.0+) ----------------------------------------------------
PARAMS_H = """
/* The public layout of OSSL_PARAM (core.h); an array ends with key == NULL. */
typedef struct ossl_param_st {
    const char *key;
    unsigned int data_type;
    void *data;
    size_t data_size;
    size_t return_size;
} OSSL_PARAM;
"""

# --- openssl/evp.h, EVP_RAND part (3.0+) ------------------------------------------------
EVP_H = """
int EVP_RAND_reseed(EVP_RAND_CTX *ctx, int prediction_resistance,
                    const unsigned char *ent, size_t ent_len,
                    const unsigned char *addin, size_t addin_len);
int EVP_RAND_generate(EVP_RAND_CTX *ctx, unsigned char *out, size_t outlen,
                      unsigned int strength, int prediction_resistance,
                      const unsigned char *addin, size_t addin_len);
int EVP_RAND_get_state(EVP_RAND_CTX *ctx);
int EVP_RAND_CTX_get_params(EVP_RAND_CTX *ctx, OSSL_PARAM params[]);
int EVP_RAND_CTX_set_params(EVP_RAND_CTX *ctx, const OSSL_PARAM params[]);
"""

# --- openssl/engine.h + the EVP signing calls: the late-load probe (an HSM key) ----------
ENGINE_H = """
/* Deprecated in 3.0 but exported; what stunnel and haproxy call for an engine key. */
typedef struct engine_st ENGINE;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
void ENGINE_load_builtin_engines(void);
ENGINE *ENGINE_by_id(const char *id);
int ENGINE_ctrl_cmd_string(ENGINE *e, const char *cmd_name, const char *arg, int cmd_optional);
int ENGINE_init(ENGINE *e);
int ENGINE_finish(ENGINE *e);
int ENGINE_free(ENGINE *e);
int ENGINE_set_default_string(ENGINE *e, const char *def_list);
/* ui_method and callback_data: always NULL here (the PIN comes as a control command). */
EVP_PKEY *ENGINE_load_private_key(ENGINE *e, const char *key_id, void *ui_method,
                                  void *callback_data);
void EVP_PKEY_free(EVP_PKEY *pkey);
const EVP_MD *EVP_sha256(void);
/* [1.1.0+] 1.0.2 has EVP_MD_CTX_create/destroy. */
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                       ENGINE *e, EVP_PKEY *pkey);
/* EVP_DigestSignUpdate is a macro over this one in 1.x. */
int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
int EVP_DigestSignFinal(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen);
"""

# Constants (macros in the headers, so not visible to cffi's ABI mode).
OPENSSL_INIT_LOAD_CRYPTO_STRINGS = 0x00000002
OPENSSL_INIT_LOAD_CONFIG = 0x00000040

OPENSSL_VERSION = 0  # OpenSSL_version() types (crypto.h)
OPENSSL_CFLAGS = 1
OPENSSL_BUILT_ON = 2
OPENSSL_PLATFORM = 3
OPENSSL_DIR = 4
OPENSSL_ENGINES_DIR = 5
OPENSSL_MODULES_DIR = 8  # 3.0+
SSLEAY_DIR = 5  # 1.0.2's SSLeay_version() numbers differ; it has no ENGINESDIR entry

OPENSSL_INFO_CONFIG_DIR = 1001  # OPENSSL_info() types (3.0+)
OPENSSL_INFO_ENGINES_DIR = 1002
OPENSSL_INFO_MODULES_DIR = 1003
OPENSSL_INFO_SEED_SOURCE = 1007

OSSL_PARAM_INTEGER = 1
OSSL_PARAM_UNSIGNED_INTEGER = 2

EVP_RAND_STATE_UNINITIALISED = 0
EVP_RAND_STATE_READY = 1
EVP_RAND_STATE_ERROR = 2

ERR_TXT_MALLOCED = 0x01
ERR_TXT_STRING = 0x02


# --- openssl/conf.h ---------------------------------------------------------------------
CONF_H = """
/* A config file's modules (providers, engines, [random] ...), as OPENSSL_init_crypto loads
   OPENSSL_CONF; appname NULL: the default section. */
int CONF_modules_load_file(const char *filename, const char *appname, unsigned long flags);
"""
CONF_MFLAGS_IGNORE_MISSING_FILE = 0x10
CONF_MFLAGS_DEFAULT_SECTION = 0x20

# --- which declarations a built module holds ----------------------------------------------
# A checksum of the declarations: an out-of-line module built from other ones (a tree not
# rebuilt after a merge) is then ignored and the declarations parsed instead.
_BODY = "".join((CRYPTO_H, ERR_H, RAND_H, RAND_DRBG_H, PARAMS_H, EVP_H, ENGINE_H, CONF_H))
DECLARATIONS_VERSION = zlib.crc32(_BODY.encode()) & 0x7FFFFFFF  # an int for the #define
VERSION_H = f"""
#define CHROOTCHECK_LIBCRYPTO_DECLARATIONS {DECLARATIONS_VERSION}
"""

DECLARATIONS = _BODY + VERSION_H
