// The deep-linking answer page: post labyard's signed answer back to the LMS at once
// (the Continue button does the same without scripts).
document.getElementById("lti-return").submit();
