#include "dtype.h"

#include <string.h>

static const struct {
	const char *name;
	unsigned bits;
	int is_float;
} dtype_table[MFS_DT__COUNT] = {
	[MFS_DT_UNKNOWN] = {"?", 0, 0},
	[MFS_DT_BOOL] = {"BOOL", 8, 0},
	[MFS_DT_U8] = {"U8", 8, 0},
	[MFS_DT_I8] = {"I8", 8, 0},
	[MFS_DT_F8_E5M2] = {"F8_E5M2", 8, 1},
	[MFS_DT_F8_E4M3] = {"F8_E4M3", 8, 1},
	[MFS_DT_I16] = {"I16", 16, 0},
	[MFS_DT_U16] = {"U16", 16, 0},
	[MFS_DT_F16] = {"F16", 16, 1},
	[MFS_DT_BF16] = {"BF16", 16, 1},
	[MFS_DT_I32] = {"I32", 32, 0},
	[MFS_DT_U32] = {"U32", 32, 0},
	[MFS_DT_F32] = {"F32", 32, 1},
	[MFS_DT_F64] = {"F64", 64, 1},
	[MFS_DT_I64] = {"I64", 64, 0},
	[MFS_DT_U64] = {"U64", 64, 0},
	[MFS_DT_F8_E8M0] = {"F8_E8M0", 8, 0},
	[MFS_DT_C64] = {"C64", 64, 0},
	[MFS_DT_F4] = {"F4", 4, 0},
	[MFS_DT_F6_E2M3] = {"F6_E2M3", 6, 0},
	[MFS_DT_F6_E3M2] = {"F6_E3M2", 6, 0},
};

unsigned mfs_dtype_bits(mfs_dtype dt)
{
	if ((unsigned)dt >= MFS_DT__COUNT)
		return 0;
	return dtype_table[dt].bits;
}

const char *mfs_dtype_name(mfs_dtype dt)
{
	if ((unsigned)dt >= MFS_DT__COUNT)
		return "?";
	return dtype_table[dt].name;
}

mfs_dtype mfs_dtype_from_name(const char *name)
{
	for (int i = 1; i < MFS_DT__COUNT; i++)
		if (strcmp(dtype_table[i].name, name) == 0)
			return (mfs_dtype)i;
	return MFS_DT_UNKNOWN;
}

int mfs_dtype_is_float(mfs_dtype dt)
{
	if ((unsigned)dt >= MFS_DT__COUNT)
		return 0;
	return dtype_table[dt].is_float;
}
