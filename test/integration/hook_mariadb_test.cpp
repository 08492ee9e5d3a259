// SPDX-License-Identifier: MIT
/* libmariadb, unmodified, through coho's hooks: 200 coroutines on one thread each connect
 * (mysql_real_connect) and run SELECT SLEEP(0.2), i. The run takes about one SLEEP, not 200 of
 * them, and every row is checked. The server: test/support/servers/mariadb.sh
 * (mariadbd --user=root --max-connections=500). */
#include <mysql.h>

#include <string>

#include "test/support/client_harness.hpp"

namespace {

constexpr int kClients = 200;
constexpr int kDelayMs = 200;  // SELECT SLEEP(0.2)
constexpr int kSlackMs = 4000; // 200 connection handshakes on 2 shared cores, sanitizers
constexpr int kWatchdogS = 30;

TEST(HookMariadb, two_hundred_coroutines_share_one_thread_through_blocking_libmariadb_calls)
{
    int port = coho_test::server_port("mariadb");
    ASSERT_GT(port, 0);
    ASSERT_EQ(mysql_library_init(0, nullptr, nullptr), 0);
    std::atomic<int> ok{0}, finished{0};

    auto client = [&](int i) {
        MYSQL *m = mysql_init(nullptr);
        ASSERT_NE(m, nullptr);
        unsigned timeout_s = 20;
        mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
        if (mysql_real_connect(m, "127.0.0.1", "root", "", nullptr, static_cast<unsigned>(port),
                               nullptr, 0) == nullptr) {
            ADD_FAILURE() << "client " << i << ": mysql_real_connect: " << mysql_error(m);
            mysql_close(m);
            return;
        }
        std::string q = "SELECT SLEEP(0.2), " + std::to_string(i);
        if (mysql_query(m, q.c_str()) != 0) {
            ADD_FAILURE() << "client " << i << ": mysql_query: " << mysql_error(m);
            mysql_close(m);
            return;
        }
        MYSQL_RES *res = mysql_store_result(m);
        MYSQL_ROW row = res != nullptr ? mysql_fetch_row(res) : nullptr;
        ASSERT_NE(row, nullptr) << "client " << i << ": " << mysql_error(m);
        EXPECT_STREQ(row[0], "0") << "client " << i << ": SLEEP was not interrupted";
        EXPECT_EQ(std::string(row[1]), std::to_string(i)) << "client " << i;
        if (row[0] != nullptr && std::string(row[0]) == "0" && row[1] != nullptr &&
            std::string(row[1]) == std::to_string(i))
            ok++;
        mysql_free_result(res);
        mysql_close(m);
    };

    int64_t ms = coho_test::run_coroutines(kClients, client, nullptr, kWatchdogS, finished);
    std::cout << kClients << " libmariadb clients running SELECT SLEEP(0.2) took " << ms
              << " ms; one after another: at least " << kClients * kDelayMs / 1000 << " s\n";
    EXPECT_EQ(ok.load(), kClients);
    EXPECT_EQ(finished.load(), kClients);
    EXPECT_GE(ms, kDelayMs - 2);
    EXPECT_LT(ms, kDelayMs + kSlackMs + coho_test::kTsanSlackMs) << "the queries did not overlap";
    mysql_library_end();
}

} // namespace
