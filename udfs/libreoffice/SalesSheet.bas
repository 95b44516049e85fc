REM salessheet spreadsheet functions for LibreOffice Calc: the Basic half.
REM Written by salessheet.libreoffice.install_libreoffice, which appends one function per salessheet
REM function below; edits here are lost on the next install.
REM Calc looks cell functions up only in loaded Basic libraries, and only Standard is loaded at start,
REM so this module lives in the user's Standard library.
Option Explicit

Private Const SCRIPT_URL = "vnd.sun.star.script:salessheet_calc.py$call?language=Python&location=user"
Private oScript As Object

REM Calls salessheet_calc.call with the formula's arguments and its document; returns what Calc shows.
Private Function SalesSheetCall(sName As String, aArgs As Variant, nGiven As Integer) As Variant
	On Local Error GoTo Failed
	If IsNull(oScript) Then
		oScript = GetDefaultContext().getByName("/singletons/com.sun.star.script.provider.theMasterScriptProviderFactory") _
			.createScriptProvider("").getScript(SCRIPT_URL)
	End If
	REM ThisComponent is Nothing for a document loaded hidden; the Python side then finds it itself
	SalesSheetCall = ToCalc(oScript.invoke(Array(sName, aArgs, nGiven, ThisComponent), Array(), Array()))
	Exit Function
Failed:
	SalesSheetCall = "salessheet: " & Error$
End Function

REM Python returns rows as an array of arrays; Calc takes only a real 2-D array as a matrix.
Private Function ToCalc(v As Variant) As Variant
	If Not IsArray(v) Then
		ToCalc = v
		Exit Function
	End If
	Dim nRows As Long, nCols As Long, r As Long, c As Long, aRow As Variant, m() As Variant
	nRows = UBound(v) - LBound(v) + 1
	aRow = v(LBound(v))
	nCols = UBound(aRow) - LBound(aRow) + 1
	ReDim m(0 To nRows - 1, 0 To nCols - 1)
	For r = 0 To nRows - 1
		aRow = v(LBound(v) + r)
		For c = 0 To nCols - 1
			m(r, c) = aRow(LBound(aRow) + c)
		Next c
	Next r
	ToCalc = m
End Function
