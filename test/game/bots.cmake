# coho-bots (game/bots): against a fake gateway written in the test (bots_test.cpp); end to end
# with coho-gate and coho-logic when those programs are part of the build.
if(TARGET coho-bots)
  add_executable(game_bots_test ${CMAKE_CURRENT_LIST_DIR}/bots_test.cpp)
  # The fake gateway is plain libc threads: the test links the shared definitions, not coho.
  target_include_directories(game_bots_test PRIVATE ${PROJECT_SOURCE_DIR}/game/common)
  target_link_libraries(game_bots_test PRIVATE coho_game_proto OpenSSL::Crypto GTest::gtest
                                               GTest::gtest_main Threads::Threads)
  target_compile_definitions(game_bots_test PRIVATE COHO_BOTS_PATH="$<TARGET_FILE:coho-bots>")
  add_dependencies(game_bots_test coho-bots)
  coho_target_flags(game_bots_test)
  gtest_discover_tests(game_bots_test DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT 90 LABELS "game;integration")
endif()

# The bots' accounting (histogram, summary), linked from the bots' own library.
if(TARGET coho_bots_core)
  add_executable(game_bots_stats_test ${CMAKE_CURRENT_LIST_DIR}/bots_stats_test.cpp)
  target_link_libraries(game_bots_stats_test PRIVATE coho_bots_core GTest::gtest GTest::gtest_main)
  coho_target_flags(game_bots_stats_test)
  gtest_discover_tests(game_bots_stats_test DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT 60 LABELS "game;unit")
endif()

# tools/run-game.sh: its missing-program check always; whole-game runs when the build has the
# gate and the logic node (they need MariaDB: tools/deps.sh game or test).
if(TARGET coho-bots)
  add_executable(game_bots_e2e_test ${CMAKE_CURRENT_LIST_DIR}/bots_e2e_test.cpp)
  target_link_libraries(game_bots_e2e_test PRIVATE GTest::gtest GTest::gtest_main)
  target_compile_definitions(
    game_bots_e2e_test PRIVATE COHO_RUN_GAME="${PROJECT_SOURCE_DIR}/tools/run-game.sh"
                               COHO_BUILD_DIR="${PROJECT_BINARY_DIR}")
  if(TARGET coho-gate AND TARGET coho-logic)
    target_compile_definitions(
      game_bots_e2e_test PRIVATE COHO_GAME_E2E=1 COHO_GATE_PATH="$<TARGET_FILE:coho-gate>"
                                 COHO_LOGIC_PATH="$<TARGET_FILE:coho-logic>"
                                 COHO_BOTS_PATH="$<TARGET_FILE:coho-bots>")
    add_dependencies(game_bots_e2e_test coho-gate coho-logic coho-bots)
  endif()
  coho_target_flags(game_bots_e2e_test)
  gtest_discover_tests(game_bots_e2e_test DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT 240 LABELS "game;integration")
endif()
