// SPDX-License-Identifier: MIT
/* libcurl's easy interface, unmodified, through coho's hooks: 200 coroutines on one thread each
 * run curl_easy_perform against an HTTP server that answers every request 200 ms after it
 * arrived (test/support/servers/http.sh, listen backlog 1024). The run takes about one delay,
 * not 200 of them, and every body is checked. */
#include <curl/curl.h>

#include <string>

#include "test/support/client_harness.hpp"

namespace {

constexpr int kClients = 200;
constexpr int kDelayMs = 200;
constexpr int kSlackMs = 3000;
constexpr int kWatchdogS = 30;

size_t append(char *p, size_t size, size_t n, void *out)
{
    static_cast<std::string *>(out)->append(p, size * n);
    return size * n;
}

TEST(HookCurl, two_hundred_coroutines_share_one_thread_through_blocking_curl_easy_perform)
{
    int port = coho_test::server_port("http");
    ASSERT_GT(port, 0);
    ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    std::atomic<int> ok{0}, finished{0};

    auto client = [&](int i) {
        CURL *h = curl_easy_init();
        ASSERT_NE(h, nullptr);
        std::string url = "http://127.0.0.1:" + std::to_string(port) + "/req/" + std::to_string(i);
        std::string body;
        curl_easy_setopt(h, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        EXPECT_EQ(rc, CURLE_OK) << "client " << i << ": " << curl_easy_strerror(rc);
        EXPECT_EQ(status, 200) << "client " << i;
        std::string want = "hello /req/" + std::to_string(i) + "\n";
        EXPECT_EQ(body, want) << "client " << i;
        if (rc == CURLE_OK && status == 200 && body == want)
            ok++;
        curl_easy_cleanup(h);
    };

    int64_t ms = coho_test::run_coroutines(kClients, client, nullptr, kWatchdogS, finished);
    std::cout << kClients << " curl_easy_perform calls (" << kDelayMs << " ms per response) took "
              << ms << " ms; one after another: at least " << kClients * kDelayMs / 1000 << " s\n";
    EXPECT_EQ(ok.load(), kClients);
    EXPECT_EQ(finished.load(), kClients);
    EXPECT_GE(ms, kDelayMs - 2);
    EXPECT_LT(ms, kDelayMs + kSlackMs + coho_test::kTsanSlackMs) << "the requests did not overlap";
    curl_global_cleanup();
}

} // namespace
