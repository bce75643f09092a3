/* mova/export.h — MOVA_API marks what libmova.so exports: the C API and the C++ API's classes and functions.
 * The library is compiled with hidden visibility, so nothing else leaves it. */
#ifndef MOVA_EXPORT_H_
#define MOVA_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define MOVA_API __attribute__((visibility("default")))
#else
#define MOVA_API
#endif

#endif /* MOVA_EXPORT_H_ */
