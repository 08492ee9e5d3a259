# game/svc: calendar timers (svc_calendar_test: civil time and DST with TZ set per case, the
# rules, the calendar on a manual clock, the system clock's timerfd) and unique ids
# (svc_ids_test).
foreach(name svc_calendar_test svc_ids_test)
  add_executable(game_${name} ${CMAKE_CURRENT_LIST_DIR}/${name}.cpp)
  target_link_libraries(game_${name} PRIVATE coho_game_svc GTest::gtest GTest::gtest_main)
  coho_target_flags(game_${name})
  gtest_discover_tests(game_${name} TEST_PREFIX "game_${name}." DISCOVERY_MODE PRE_TEST
                       DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)
endforeach()

# Labels are lists, which gtest_discover_tests cannot pass through: set by a file ctest
# includes after the discovered tests (as logic.cmake does).
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/svc_labels.cmake
     "foreach(t IN LISTS game_svc_calendar_test_TESTS game_svc_ids_test_TESTS)\n"
     "  set_tests_properties(\${t} PROPERTIES LABELS \"game;unit\")\n"
     "endforeach()\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${CMAKE_CURRENT_BINARY_DIR}/svc_labels.cmake)
