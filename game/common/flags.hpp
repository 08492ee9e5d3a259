// SPDX-License-Identifier: MIT
// Command lines of the game programs: `--name VALUE` or `--name=VALUE`, plus `--help`. A flag
// the program does not declare, a missing value, a value that does not parse or a required
// flag left out prints one clear line and the usage, and exits 1.
//
//     coho::game::Flags f("coho-logic", "a logic node of the game server");
//     auto &listen = f.str("listen", "HOST:PORT", "where gateways connect", "", true);
//     auto &node_id = f.u64("node-id", "N", "this node's id", 1);
//     f.parse(argc, argv);
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

namespace coho::game {

class Flags {
public:
    Flags(std::string prog, std::string what) : prog_(std::move(prog)), what_(std::move(what)) {}

    std::string &str(const char *name, const char *meta, const char *help, std::string def = {},
                     bool required = false)
    {
        strs_.push_back(std::move(def));
        specs_.push_back({name, meta, help, required, &strs_.back(), nullptr, nullptr, false});
        return strs_.back();
    }
    // A string flag that may be repeated: the values joined with ',' (as if given as one list).
    std::string &list(const char *name, const char *meta, const char *help, bool required = false)
    {
        std::string &s = str(name, meta, help, {}, required);
        specs_.back().append = true;
        return s;
    }
    uint64_t &u64(const char *name, const char *meta, const char *help, uint64_t def,
                  bool required = false)
    {
        nums_.push_back(def);
        specs_.push_back({name, meta, help, required, nullptr, &nums_.back(), nullptr, false});
        return nums_.back();
    }
    bool &flag(const char *name, const char *help)
    {
        bools_.push_back(false);
        specs_.push_back({name, nullptr, help, false, nullptr, nullptr, &bools_.back(), false});
        return bools_.back();
    }

    void parse(int argc, char **argv)
    {
        for (int i = 1; i < argc; i++) {
            std::string a = argv[i];
            if (a == "--help" || a == "-h") {
                usage(stdout);
                std::exit(0);
            }
            if (a.rfind("--", 0) != 0)
                fail("unexpected argument '" + a + "'");
            std::string name = a.substr(2), value;
            bool has_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name.resize(eq);
                has_value = true;
            }
            Spec *s = find(name);
            if (!s)
                fail("unknown flag '--" + name + "'");
            s->seen = true;
            if (s->b) {
                if (has_value)
                    fail("flag '--" + name + "' takes no value");
                *s->b = true;
                continue;
            }
            if (!has_value) {
                if (i + 1 >= argc)
                    fail("flag '--" + name + "' needs a value (" + s->meta + ")");
                value = argv[++i];
            }
            if (s->s) {
                if (s->append && !s->s->empty())
                    *s->s += "," + value;
                else
                    *s->s = value;
            } else {
                char *end = nullptr;
                errno = 0;
                unsigned long long v = std::strtoull(value.c_str(), &end, 10);
                if (value.empty() || value[0] == '-' || errno || *end)
                    fail("flag '--" + name + "': '" + value + "' is not a non-negative integer");
                *s->n = v;
            }
        }
        for (auto &s : specs_)
            if (s.required && !s.seen)
                fail(std::string("missing required flag '--") + s.name + "'");
    }

    // Whether the flag was given on the command line.
    bool given(const char *name)
    {
        Spec *s = find(name);
        return s && s->seen;
    }

    [[noreturn]] void fail(const std::string &msg)
    {
        std::fprintf(stderr, "%s: %s\n", prog_.c_str(), msg.c_str());
        usage(stderr);
        std::exit(1);
    }

    void usage(FILE *out) const
    {
        std::fprintf(out, "usage: %s [flags]\n%s\n\nflags:\n", prog_.c_str(), what_.c_str());
        for (auto &s : specs_) {
            std::string left =
                std::string("  --") + s.name + (s.meta ? std::string(" ") + s.meta : "");
            std::string def;
            if (s.required)
                def = " (required)";
            else if (s.s && !s.s->empty())
                def = " (default " + *s.s + ")";
            else if (s.n)
                def = " (default " + std::to_string(*s.n) + ")";
            std::fprintf(out, "%-34s %s%s\n", left.c_str(), s.help, def.c_str());
        }
    }

private:
    struct Spec {
        const char *name, *meta, *help;
        bool required;
        std::string *s;
        uint64_t *n;
        bool *b;
        bool seen;
        bool append = false; // list(): a repeated flag adds to the value
    };
    Spec *find(const std::string &name)
    {
        for (auto &s : specs_)
            if (name == s.name)
                return &s;
        return nullptr;
    }
    std::string prog_, what_;
    std::deque<std::string> strs_; // deque: references handed out stay valid
    std::deque<uint64_t> nums_;
    std::deque<bool> bools_;
    std::vector<Spec> specs_;
};

} // namespace coho::game
