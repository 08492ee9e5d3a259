// SPDX-License-Identifier: MIT
/* The scheduler API for the hook integration tests, which are built three ways: linked with
 * libcoho.so, with the static library, or with neither and run under
 * LD_PRELOAD=libcoho_preload.so (COHO_CONF_PRELOAD). The preload build looks the functions up
 * with dlsym(RTLD_DEFAULT, ...) in the preloaded library: linking libcoho.so as well would load
 * a second copy of the runtime whose scheduler the preloaded hooks would never see. */
#ifndef COHO_TEST_INTEGRATION_COHO_API_H
#define COHO_TEST_INTEGRATION_COHO_API_H

#include <dlfcn.h>

#include <coho.h>

namespace coho_test {

struct Api {
    decltype(&coho_sched_opts_init) opts_init;
    decltype(&coho_sched_create) create;
    decltype(&coho_sched_run) run;
    decltype(&coho_sched_destroy) destroy;
    decltype(&coho_spawn) spawn;
    decltype(&coho_sleep_ms) sleep_ms;
    decltype(&coho_self) self;
    decltype(&coho_cancel) cancel;
    decltype(&coho_yield) yield;
    decltype(&coho_sched_post) post;
    decltype(&::sendn) sendn_fn;
    decltype(&::writevn) writevn_fn;
    bool ok; /* every function was found */
};

template <class T>
void api_lookup(T &fn, const char *name, bool &ok)
{
    fn = reinterpret_cast<T>(dlsym(RTLD_DEFAULT, name));
    ok = ok && fn != nullptr;
}

inline const Api &api()
{
    static const Api a = [] {
        Api r{};
        r.ok = true;
#if COHO_CONF_PRELOAD
        api_lookup(r.opts_init, "coho_sched_opts_init", r.ok);
        api_lookup(r.create, "coho_sched_create", r.ok);
        api_lookup(r.run, "coho_sched_run", r.ok);
        api_lookup(r.destroy, "coho_sched_destroy", r.ok);
        api_lookup(r.spawn, "coho_spawn", r.ok);
        api_lookup(r.sleep_ms, "coho_sleep_ms", r.ok);
        api_lookup(r.self, "coho_self", r.ok);
        api_lookup(r.cancel, "coho_cancel", r.ok);
        api_lookup(r.yield, "coho_yield", r.ok);
        api_lookup(r.post, "coho_sched_post", r.ok);
        api_lookup(r.sendn_fn, "sendn", r.ok);
        api_lookup(r.writevn_fn, "writevn", r.ok);
#else
        r.opts_init = &coho_sched_opts_init;
        r.create = &coho_sched_create;
        r.run = &coho_sched_run;
        r.destroy = &coho_sched_destroy;
        r.spawn = &coho_spawn;
        r.sleep_ms = &coho_sleep_ms;
        r.self = &coho_self;
        r.cancel = &coho_cancel;
        r.yield = &coho_yield;
        r.post = &coho_sched_post;
        r.sendn_fn = &::sendn;
        r.writevn_fn = &::writevn;
#endif
        return r;
    }();
    return a;
}

} // namespace coho_test

#endif /* COHO_TEST_INTEGRATION_COHO_API_H */
