/* A PKCS#11 module in front of another, for the test of a token that stops answering or goes
 * away under a running vault (tests/vault/hsm.rs). It loads the module HOSO_SHIM_MODULE names
 * and passes every call through unchanged, except:
 *
 *   - while the file $HOSO_SHIM_DIR/stall exists, every call waits (a token that stops
 *     answering);
 *   - while the file $HOSO_SHIM_DIR/gone exists, every call answers CKR_DEVICE_REMOVED (a token
 *     taken out), without reaching the module behind;
 *   - when the file $HOSO_SHIM_DIR/torn is there, the next call (but C_Initialize or
 *     C_Finalize) takes it away, and from then on the shim answers CKR_GENERAL_ERROR to every
 *     call but C_Finalize until C_Initialize: as SoftHSM2 does once it has read its token's
 *     files while another process rewrote them.
 *
 * Every PKCS#11 v2.40 function returns CK_RV and takes pointers and integers only, so on x86-64
 * one forwarding shape serves all 68 entries of the function list. Built by the test with the
 * system's C compiler: cc -shared -fPIC -o shim.so pkcs11_shim.c -ldl
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef unsigned long rv_t;
typedef rv_t (*fn_t)(long, long, long, long, long, long, long, long);

#define FUNCTIONS 68
#define CKR_DEVICE_REMOVED 0x32UL
#define CKR_GENERAL_ERROR 0x05UL
#define C_INITIALIZE 0
#define C_FINALIZE 1
#define GET_FUNCTION_LIST 3

struct function_list {
    unsigned char version[2];
    fn_t fns[FUNCTIONS];
};

static struct function_list *real;
static struct function_list mine;

static int present(const char *name) {
    char path[4096];
    struct stat st;
    const char *dir = getenv("HOSO_SHIM_DIR");
    if (dir == NULL)
        return 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static void take_away(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", getenv("HOSO_SHIM_DIR"), name);
    unlink(path);
}

static _Atomic int broken;

static rv_t gate(int i) {
    if (i == GET_FUNCTION_LIST)
        return 0;
    while (present("stall"))
        usleep(20000);
    if (i == C_INITIALIZE)
        broken = 0;
    else if (i != C_FINALIZE && present("torn")) {
        broken = 1;
        take_away("torn");
    }
    if (broken && i != C_INITIALIZE && i != C_FINALIZE)
        return CKR_GENERAL_ERROR;
    return present("gone") ? CKR_DEVICE_REMOVED : 0;
}

#define W(i)                                                                         \
    static rv_t w##i(long a, long b, long c, long d, long e, long f, long g, long h) { \
        rv_t r = gate(i);                                                            \
        return r ? r : real->fns[i](a, b, c, d, e, f, g, h);                         \
    }
#define W10(t) W(t##0) W(t##1) W(t##2) W(t##3) W(t##4) W(t##5) W(t##6) W(t##7) W(t##8) W(t##9)
W(0) W(1) W(2) W(3) W(4) W(5) W(6) W(7) W(8) W(9)
W10(1) W10(2) W10(3) W10(4) W10(5)
W(60) W(61) W(62) W(63) W(64) W(65) W(66) W(67)

#define L10(t) w##t##0, w##t##1, w##t##2, w##t##3, w##t##4, w##t##5, w##t##6, w##t##7, w##t##8, w##t##9
static const fn_t wrappers[FUNCTIONS] = {
    w0, w1, w2, w3, w4, w5, w6, w7, w8, w9,
    L10(1), L10(2), L10(3), L10(4), L10(5),
    w60, w61, w62, w63, w64, w65, w66, w67,
};

rv_t C_GetFunctionList(struct function_list **out) {
    if (real == NULL) {
        const char *path = getenv("HOSO_SHIM_MODULE");
        void *module = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
        rv_t (*get)(struct function_list **) =
            module ? (rv_t (*)(struct function_list **))dlsym(module, "C_GetFunctionList") : NULL;
        if (get == NULL || get(&real) != 0)
            return CKR_GENERAL_ERROR;
        mine.version[0] = real->version[0];
        mine.version[1] = real->version[1];
        for (int i = 0; i < FUNCTIONS; i++)
            mine.fns[i] = wrappers[i];
    }
    *out = &mine;
    return 0;
}
