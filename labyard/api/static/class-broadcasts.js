// A learning page opened during a class: the instructor's broadcasts show here too, live,
// where the learner works (the class page shows them as well).
import { showBroadcasts } from "/static/classes.js";

const data = JSON.parse(document.getElementById("learn-data").textContent);
const box = document.getElementById("broadcasts");
for (const classId of data.classes || []) showBroadcasts(classId, box);
