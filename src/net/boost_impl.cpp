// Boost.Asio and Boost.Beast, compiled once for the whole program (separate compilation):
// every other translation unit only includes their headers.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
