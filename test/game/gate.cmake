# coho-gate end to end (game/gate/): the gateway as a process, fake logic nodes speaking
# node.hpp in the test, TCP clients and a python3-websockets client.
add_executable(game_gate_test ${CMAKE_CURRENT_LIST_DIR}/gate_test.cpp)
target_link_libraries(game_gate_test PRIVATE coho_game_common GTest::gtest GTest::gtest_main)
target_include_directories(game_gate_test PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_definitions(game_gate_test PRIVATE COHO_GATE_BIN="$<TARGET_FILE:coho-gate>"
                                                  COHO_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
add_dependencies(game_gate_test coho-gate)
set_target_properties(game_gate_test PROPERTIES CXX_STANDARD 17)
coho_target_flags(game_gate_test)
gtest_discover_tests(game_gate_test DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 120 LABELS "game;integration")
