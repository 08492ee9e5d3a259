// SPDX-License-Identifier: MIT
// A small state file replaced as a whole and durably: written to PATH.tmp, fsync'd, renamed
// over PATH, and the directory fsync'd so that the rename reaches the disk too. The boundary
// store (calendar.cpp) and the id reservation (ids.cpp) keep their state this way.
#pragma once

#include <string>

namespace coho::game {

// Throws std::system_error naming the step that failed (open, write, rename).
void write_file_durably(const std::string &path, const std::string &text);

} // namespace coho::game
