/*
 * dtype.h - tensor element types, as safetensors names them.
 *
 * The numeric values are stored on disk (tensor records) and never change;
 * new types get new numbers.  Sizes are in bits because safetensors defines
 * sub-byte types (F4, F6_*): a tensor's byte size is nelem * bits / 8 and
 * must be a whole number of bytes.
 */
#ifndef MFS_DTYPE_H
#define MFS_DTYPE_H

typedef enum mfs_dtype {
	MFS_DT_UNKNOWN = 0,
	MFS_DT_BOOL = 1,
	MFS_DT_U8 = 2,
	MFS_DT_I8 = 3,
	MFS_DT_F8_E5M2 = 4,
	MFS_DT_F8_E4M3 = 5,
	MFS_DT_I16 = 6,
	MFS_DT_U16 = 7,
	MFS_DT_F16 = 8,
	MFS_DT_BF16 = 9,
	MFS_DT_I32 = 10,
	MFS_DT_U32 = 11,
	MFS_DT_F32 = 12,
	MFS_DT_F64 = 13,
	MFS_DT_I64 = 14,
	MFS_DT_U64 = 15,
	MFS_DT_F8_E8M0 = 16,
	MFS_DT_C64 = 17,
	MFS_DT_F4 = 18,
	MFS_DT_F6_E2M3 = 19,
	MFS_DT_F6_E3M2 = 20,
	MFS_DT__COUNT
} mfs_dtype;

/** Bits per element; 0 for MFS_DT_UNKNOWN or an out-of-range value. */
unsigned mfs_dtype_bits(mfs_dtype dt);

/** The safetensors name ("BF16"); "?" for an unknown value. Static string. */
const char *mfs_dtype_name(mfs_dtype dt);

/** Parse a safetensors dtype name; MFS_DT_UNKNOWN when not recognised. */
mfs_dtype mfs_dtype_from_name(const char *name);

/** 1 for the IEEE-style float types a plane-splitting codec can target. */
int mfs_dtype_is_float(mfs_dtype dt);

#endif
