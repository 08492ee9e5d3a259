# coho-logic (game/logic): the AOI grid (unit), and the node driven by fake gateways against a
# throwaway mariadbd (test/support/servers/mariadb.sh, a fixture of its own).
if(NOT TARGET coho-logic)
  return()
endif()

add_executable(game_logic_aoi_test ${CMAKE_CURRENT_LIST_DIR}/logic_aoi_test.cpp)
target_include_directories(game_logic_aoi_test PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(game_logic_aoi_test PRIVATE GTest::gtest GTest::gtest_main)
coho_target_flags(game_logic_aoi_test)
gtest_discover_tests(game_logic_aoi_test TEST_PREFIX "game_logic_aoi_test." DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 120)

set(logic_servers_dir ${CMAKE_CURRENT_BINARY_DIR}/logic_servers)
add_test(NAME fixture.game_logic_mariadb_start
         COMMAND ${PROJECT_SOURCE_DIR}/test/support/servers/mariadb.sh start ${logic_servers_dir}
                 $<TARGET_FILE:coho_test_delayd>)
add_test(NAME fixture.game_logic_mariadb_stop
         COMMAND ${PROJECT_SOURCE_DIR}/test/support/servers/mariadb.sh stop ${logic_servers_dir}
                 $<TARGET_FILE:coho_test_delayd>)
set_tests_properties(fixture.game_logic_mariadb_start PROPERTIES
                     FIXTURES_SETUP game_logic_mariadb TIMEOUT 120 LABELS "game;integration")
set_tests_properties(fixture.game_logic_mariadb_stop PROPERTIES
                     FIXTURES_CLEANUP game_logic_mariadb TIMEOUT 60 LABELS "game;integration")

# The node tests read the database with libmariadb (game/'s imported target is not visible here).
find_package(PkgConfig REQUIRED)
pkg_check_modules(LOGIC_TEST_MARIADB REQUIRED IMPORTED_TARGET libmariadb)
add_executable(game_logic_node_test ${CMAKE_CURRENT_LIST_DIR}/logic_node_test.cpp)
target_include_directories(game_logic_node_test PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(game_logic_node_test PRIVATE coho_game_proto PkgConfig::LOGIC_TEST_MARIADB OpenSSL::Crypto
                                                   GTest::gtest GTest::gtest_main)
target_compile_definitions(game_logic_node_test PRIVATE
                           COHO_LOGIC_BIN="$<TARGET_FILE:coho-logic>"
                           COHO_MARIADB_SH="${PROJECT_SOURCE_DIR}/test/support/servers/mariadb.sh"
                           COHO_DELAYD_BIN="$<TARGET_FILE:coho_test_delayd>"
                           COHO_TOP_TOOL="${PROJECT_SOURCE_DIR}/tools/coho-top"
                           COHO_GDB_SCRIPT="${PROJECT_SOURCE_DIR}/tools/coho-gdb.py")
coho_target_flags(game_logic_node_test)
add_dependencies(game_logic_node_test coho-logic)
if(TARGET coho-gate) # SceneCluster: scenes shared by nodes behind a real gateway
  target_compile_definitions(game_logic_node_test PRIVATE COHO_GATE_BIN="$<TARGET_FILE:coho-gate>")
  add_dependencies(game_logic_node_test coho-gate)
endif()
gtest_discover_tests(game_logic_node_test TEST_PREFIX "game_logic_node_test." DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 120 FIXTURES_REQUIRED game_logic_mariadb
                                ENVIRONMENT "COHO_TEST_SERVERS=${logic_servers_dir}")

# Labels are lists, which gtest_discover_tests cannot pass through (CMake 3.25 flattens them):
# they are set by a file ctest includes after the discovered tests.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/logic_labels.cmake
     "foreach(t IN LISTS game_logic_aoi_test_TESTS)\n"
     "  set_tests_properties(\${t} PROPERTIES LABELS \"game;unit\")\n"
     "endforeach()\n"
     "foreach(t IN LISTS game_logic_node_test_TESTS)\n"
     "  set_tests_properties(\${t} PROPERTIES LABELS \"game;integration\")\n"
     "  if(t MATCHES \"LogicPersist\")\n"
     "    set_tests_properties(\${t} PROPERTIES TIMEOUT 300)\n" # mariadbd installed, killed, restarted
     "  endif()\n"
     "  if(t MATCHES \"SceneCluster\")\n"
     "    set_tests_properties(\${t} PROPERTIES LABELS \"game;cluster;integration\")\n"
     "  endif()\n"
     "  if(t MATCHES \"DebugTools\")\n"
     "    set_tests_properties(\${t} PROPERTIES TIMEOUT 300)\n" # gdb attaches to a sanitized node
     "  endif()\n"
     "endforeach()\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${CMAKE_CURRENT_BINARY_DIR}/logic_labels.cmake)
