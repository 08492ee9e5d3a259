# game/cluster: the etcd client, registration, discovery and machine ids against a throwaway
# etcd (test/support/servers/etcd.sh, a fixture of its own; Debian's etcd-server).
if(NOT TARGET coho_game_cluster)
  return()
endif()

set(cluster_servers_dir ${CMAKE_CURRENT_BINARY_DIR}/cluster_servers)
add_test(NAME fixture.game_cluster_etcd_start
         COMMAND ${PROJECT_SOURCE_DIR}/test/support/servers/etcd.sh start ${cluster_servers_dir}
                 $<TARGET_FILE:coho_test_delayd>)
add_test(NAME fixture.game_cluster_etcd_stop
         COMMAND ${PROJECT_SOURCE_DIR}/test/support/servers/etcd.sh stop ${cluster_servers_dir}
                 $<TARGET_FILE:coho_test_delayd>)
set_tests_properties(fixture.game_cluster_etcd_start PROPERTIES
                     FIXTURES_SETUP game_cluster_etcd TIMEOUT 120 LABELS "game;cluster;integration")
set_tests_properties(fixture.game_cluster_etcd_stop PROPERTIES
                     FIXTURES_CLEANUP game_cluster_etcd TIMEOUT 60 LABELS "game;cluster;integration")

# The fencing tests' players need a database too: a throwaway mariadbd next to the etcd.
add_test(NAME fixture.game_cluster_mariadb_start
         COMMAND ${PROJECT_SOURCE_DIR}/test/support/servers/mariadb.sh start ${cluster_servers_dir}
                 $<TARGET_FILE:coho_test_delayd>)
add_test(NAME fixture.game_cluster_mariadb_stop
         COMMAND ${PROJECT_SOURCE_DIR}/test/support/servers/mariadb.sh stop ${cluster_servers_dir}
                 $<TARGET_FILE:coho_test_delayd>)
set_tests_properties(fixture.game_cluster_mariadb_start PROPERTIES
                     FIXTURES_SETUP game_cluster_mariadb TIMEOUT 120 LABELS "game;cluster;integration")
set_tests_properties(fixture.game_cluster_mariadb_stop PROPERTIES
                     FIXTURES_CLEANUP game_cluster_mariadb TIMEOUT 60 LABELS "game;cluster;integration")

foreach(t IN ITEMS etcd member)
  add_executable(game_cluster_${t}_test ${CMAKE_CURRENT_LIST_DIR}/cluster_${t}_test.cpp)
  target_include_directories(game_cluster_${t}_test PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(game_cluster_${t}_test PRIVATE coho_game_cluster GTest::gtest GTest::gtest_main)
  coho_target_flags(game_cluster_${t}_test)
  gtest_discover_tests(game_cluster_${t}_test TEST_PREFIX "game_cluster_${t}_test." DISCOVERY_MODE PRE_TEST
                       DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT 120 FIXTURES_REQUIRED game_cluster_etcd
                                  ENVIRONMENT "COHO_TEST_SERVERS=${cluster_servers_dir}")
endforeach()

# coho-logic in a cluster: registration, deregistration, fencing after a SIGSTOP past the TTL.
if(TARGET coho-logic)
  add_executable(game_cluster_fence_test ${CMAKE_CURRENT_LIST_DIR}/cluster_fence_test.cpp)
  target_include_directories(game_cluster_fence_test PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(game_cluster_fence_test PRIVATE coho_game_cluster GTest::gtest GTest::gtest_main)
  target_compile_definitions(game_cluster_fence_test PRIVATE COHO_LOGIC_BIN="$<TARGET_FILE:coho-logic>")
  add_dependencies(game_cluster_fence_test coho-logic)
  coho_target_flags(game_cluster_fence_test)
  gtest_discover_tests(game_cluster_fence_test TEST_PREFIX "game_cluster_fence_test." DISCOVERY_MODE PRE_TEST
                       DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT 120 FIXTURES_REQUIRED game_cluster_etcd
                                  ENVIRONMENT "COHO_TEST_SERVERS=${cluster_servers_dir}")
endif()

# tools/run-cluster.sh, short: etcd, MariaDB, 3 logic nodes, 2 gateways (which find the nodes only
# through etcd) and bots; `kill -9` of a logic node under load costs only the calls in flight.
if(TARGET coho-gate AND TARGET coho-logic AND TARGET coho-bots)
  # Every call kind, chat and scene pushes between bots on both gateways, no fault: no error.
  add_test(NAME game_cluster_run
           COMMAND ${PROJECT_SOURCE_DIR}/tools/run-cluster.sh ${PROJECT_BINARY_DIR} --duration-s 10
                   --bots 20)
  set_tests_properties(game_cluster_run PROPERTIES TIMEOUT 240 LABELS "game;cluster;integration")
  add_test(NAME game_cluster_run_kill
           COMMAND ${PROJECT_SOURCE_DIR}/tools/run-cluster.sh ${PROJECT_BINARY_DIR} --kill
                   --duration-s 12 --bots 20 --ttl-s 2)
  set_tests_properties(game_cluster_run_kill PROPERTIES TIMEOUT 240 LABELS "game;cluster;integration")
  # SIGSTOP of a logic node for 2 x TTL: calls parked on it fail, it notices its lease is lost and
  # registers again.
  add_test(NAME game_cluster_run_stop
           COMMAND ${PROJECT_SOURCE_DIR}/tools/run-cluster.sh ${PROJECT_BINARY_DIR} --stop
                   --duration-s 15 --bots 20 --ttl-s 2)
  set_tests_properties(game_cluster_run_stop PROPERTIES TIMEOUT 240 LABELS "game;cluster;integration")
  # etcd stopped for 2 s and started again under load: no call fails (the 10 s lease outlives
  # the outage), and a node that joins afterwards is found through the re-established watches.
  add_test(NAME game_cluster_run_etcd_restart
           COMMAND ${PROJECT_SOURCE_DIR}/tools/run-cluster.sh ${PROJECT_BINARY_DIR} --etcd-restart
                   --duration-s 12 --bots 20 --ttl-s 10)
  set_tests_properties(game_cluster_run_etcd_restart PROPERTIES TIMEOUT 240 LABELS "game;cluster;integration")
  # kill -9 of a gateway halfway: its bots move to the other one, are refused their REBIND
  # (status 2) and log in again; every one of them plays again, nothing else fails.
  add_test(NAME game_cluster_run_kill_gate
           COMMAND ${PROJECT_SOURCE_DIR}/tools/run-cluster.sh ${PROJECT_BINARY_DIR} --kill-gate
                   --duration-s 8 --bots 20 --ttl-s 2)
  set_tests_properties(game_cluster_run_kill_gate PROPERTIES TIMEOUT 240 LABELS "game;cluster;integration")
endif()

file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/cluster_labels.cmake
     "foreach(t IN LISTS game_cluster_etcd_test_TESTS game_cluster_member_test_TESTS\n"
     "                  game_cluster_fence_test_TESTS)\n"
     "  set_tests_properties(\${t} PROPERTIES LABELS \"game;cluster;integration\")\n"
     "endforeach()\n"
     # the fencing tests' players need the database as well (a list: set here, not through
     # gtest_discover_tests, which flattens it)
     "foreach(t IN LISTS game_cluster_fence_test_TESTS)\n"
     "  set_tests_properties(\${t} PROPERTIES FIXTURES_REQUIRED \"game_cluster_etcd;game_cluster_mariadb\")\n"
     "endforeach()\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${CMAKE_CURRENT_BINARY_DIR}/cluster_labels.cmake)
