// SPDX-License-Identifier: MIT
#include "game/svc/durable_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace coho::game {

void write_file_durably(const std::string &path, const std::string &text)
{
    const std::string tmp = path + ".tmp";
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "open " + tmp);
    if (write(fd, text.data(), text.size()) != ssize_t(text.size()) || fsync(fd) != 0) {
        const int err = errno != 0 ? errno : EIO;
        close(fd);
        throw std::system_error(err, std::generic_category(), "write " + tmp);
    }
    close(fd);
    if (rename(tmp.c_str(), path.c_str()) != 0)
        throw std::system_error(errno, std::generic_category(), "rename " + tmp);
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { // the rename itself must reach the disk
        fsync(dfd);
        close(dfd);
    }
}

} // namespace coho::game
