# coho-logic's calendar (game/logic/timers.cpp) as a process: the daily reset through an injected
# clock offset, on /stats and /metrics, across restarts with --state-dir. No database needed.
if(NOT TARGET coho-logic)
  return()
endif()
add_executable(game_logic_calendar_test ${CMAKE_CURRENT_LIST_DIR}/logic_calendar_test.cpp)
target_link_libraries(game_logic_calendar_test PRIVATE GTest::gtest GTest::gtest_main)
target_compile_definitions(game_logic_calendar_test PRIVATE
                           COHO_LOGIC_BIN="$<TARGET_FILE:coho-logic>")
coho_target_flags(game_logic_calendar_test)
add_dependencies(game_logic_calendar_test coho-logic)
gtest_discover_tests(game_logic_calendar_test TEST_PREFIX "game_logic_calendar_test."
                     DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 180)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/logic_calendar_labels.cmake
     "foreach(t IN LISTS game_logic_calendar_test_TESTS)\n"
     "  set_tests_properties(\${t} PROPERTIES LABELS \"game;integration\")\n"
     "endforeach()\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES
             ${CMAKE_CURRENT_BINARY_DIR}/logic_calendar_labels.cmake)
