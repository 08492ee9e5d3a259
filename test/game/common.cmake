# game/common: the client frame codec, the gateway <-> logic protocol, tokens, rendezvous
# hashing, command lines.
add_executable(game_common_test ${CMAKE_CURRENT_LIST_DIR}/common_test.cpp)
target_link_libraries(game_common_test PRIVATE coho_game_common GTest::gtest GTest::gtest_main)
set_target_properties(game_common_test PROPERTIES CXX_STANDARD 17)
coho_target_flags(game_common_test)
gtest_discover_tests(game_common_test DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 60 LABELS "game;unit")
