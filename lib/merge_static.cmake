# Merge static archives into one (GNU ar's MRI script): libmodelfs.a holds
# the API and every layer it is built from, so `-lmodelfs` alone links.
# Called as: cmake -DAR=... -DOUT=... -DLIBS=a.a;b.a -P merge_static.cmake
set(mri "CREATE ${OUT}\n")
foreach(lib ${LIBS})
  string(APPEND mri "ADDLIB ${lib}\n")
endforeach()
string(APPEND mri "SAVE\nEND\n")
file(WRITE "${OUT}.mri" "${mri}")
file(REMOVE "${OUT}")
execute_process(COMMAND "${AR}" -M INPUT_FILE "${OUT}.mri" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "merging ${LIBS} into ${OUT} failed (${AR} -M: ${rc})")
endif()
