# Compile and link flags shared by every coho target: standards, warnings, sanitizers.
# Applied per target (STYLE.md "Targets only": no global CMAKE_C_FLAGS edits).

set(COHO_C_WARNINGS -Wall -Wextra -Wshadow $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes>)

function(coho_target_flags tgt)
  set_target_properties(${tgt} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS ON
                        CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF
                        C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden
                        VISIBILITY_INLINES_HIDDEN ON)
  target_compile_options(${tgt} PRIVATE $<$<COMPILE_LANGUAGE:C,CXX>:${COHO_C_WARNINGS}>
                         # __FILE__ relative to the repository root: log lines read [log/log.c:12]
                         -fmacro-prefix-map=${PROJECT_SOURCE_DIR}/=)
  if(COHO_WERROR)
    target_compile_options(${tgt} PRIVATE $<$<COMPILE_LANGUAGE:C,CXX>:-Werror>)
  endif()
  if(COHO_SANITIZE)
    target_compile_options(${tgt} PRIVATE -fsanitize=${COHO_SANITIZE} -fno-omit-frame-pointer
                           $<$<COMPILE_LANGUAGE:C,CXX>:-fno-sanitize-recover=all>)
    target_compile_definitions(${tgt} PRIVATE COHO_SANITIZE_BUILD=1)
  endif()
  coho_target_link_flags(${tgt})
endfunction()

# Link-side sanitizer flags (shared libraries and executables).
function(coho_target_link_flags tgt)
  if(COHO_SANITIZE)
    get_target_property(type ${tgt} TYPE)
    if(NOT type STREQUAL "OBJECT_LIBRARY" AND NOT type STREQUAL "INTERFACE_LIBRARY")
      target_link_options(${tgt} PRIVATE -fsanitize=${COHO_SANITIZE})
    endif()
  endif()
endfunction()
